"""An offline vision setting in a temporary directory: a tiny ViT checkpoint with its image
processor, and tiny image folders whose classes differ in colour (learnable in a few steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]]
)  # fmt: skip


def write_image_folder(
    root: Path, classes: int = 10, sizes=(("train", 4), ("test", 2)), seed: int = 0
) -> Path:
    """``root/<split>/<class>/<i>.png``: 24x24 images of the class colour plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in sizes:
        for c in range(classes):
            d = root / split / f"class_{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = COLOURS[c % len(COLOURS)] + rng.normal(0, 20, (24, 24, 3))
                img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                # Some grayscale and RGBA files: the loader converts every mode to RGB.
                img = img.convert("L") if i == 1 else img.convert("RGBA") if i == 2 else img
                img.save(d / f"{i}.png")
    return root


def write_tiny_vit(path: Path, seed: int = 0, **shape) -> Path:
    """A two-layer ViT for 32x32 images with its image processor; `shape` overrides the
    config's sizes (bitsandbytes' 4-bit CPU kernel wants widths in multiples of 64)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    sizes = dict(hidden_size=32, intermediate_size=37) | shape
    cfg = ViTConfig(
        image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=2, **sizes
    )
    ViTForImageClassification(cfg).save_pretrained(path)
    ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(path)
    return path

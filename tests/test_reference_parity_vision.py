"""The vision preset runs the paper authors' ViT experiment step for step.

Against their script (SamsungLabs/GPart at 320f0c1, ``src/scripts/vision/finetune_ViT.py``,
in ``../shared/reference/GPart-320f0c1`` or ``GPART_REFERENCE_SRC``; skipped without it),
run by `reference_vision_worker.py` in its own process, and our ``finetune_ViT.py`` with the
default preset, on real weights (DINOv2-S from ``../shared/models/dinov2-small``, whose
dropout is off; skipped without it) and real images (scikit-learn's 8x8 digits, upscaled):
the same number of steps with the same per-step losses (1e-6 relative), the same split
members in the same order, the same selected model's selection accuracy and the same test
accuracy. Two datasets, each through the loader the script uses for it: CIFAR-10-shaped
(a hub dataset, 10 % carved out of train by datasets' train_test_split) and DTD (the
``images/`` folder read by datasets' imagefolder, shuffled and cut 0.28 / 0.715). Only the
size of the run (model size, d, epochs, image size) is given on both command lines;
everything else is each side's default. Augmentation is on: both sides draw it from the
global torch RNG in the main process (no DataLoader workers; with workers each would draw
from a seed of its own). Both sides compute on one thread: the same reduction order, and on
a busy two-core machine several threads are ten times slower, not faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpart.data.vision import load_vision_splits
from gpart.runners import vision as runner
from reference_tree import REFERENCE_SRC, SKIP_REASON
from reference_vision_worker import pixel_digest
from training_probes import record_run_losses

HERE = Path(__file__).parent
DINOV2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "dinov2-small"
SEED = 42
IMAGE_SIZE = 28  # 2 x 2 patches of 14: DINOv2 interpolates its position embeddings
EPOCHS = 2
D = 4096  # the paper's is 144,000 for large
THREADS = 1  # the `one_thread` fixture's (conftest.py)


def _digits(n: int, start: int = 0) -> list[tuple[object, int]]:
    """`n` of scikit-learn's 8x8 digits from `start`, as 32 x 32 RGB images, with labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for pixels, label in zip(
        digits.images[start : start + n], digits.target[start : start + n], strict=True
    ):
        gray = Image.fromarray((pixels * (255 / 16)).astype("uint8")).resize((32, 32))
        out.append((gray.convert("RGB"), int(label)))
    return out


def _write_cifar10(root: Path, n_train: int = 200, n_test: int = 40) -> None:
    """A CIFAR-10-shaped hub dataset (``img``, ``label``) saved to ``root/cifar10``: what the
    worker's ``load_dataset("cifar10")`` returns and what our ``--data_dir`` reads."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    features = Features({"img": Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
    parts = {"train": _digits(n_train), "test": _digits(n_test, start=n_train)}
    DatasetDict(
        {
            split: Dataset.from_dict(
                {"img": [im for im, _ in rows], "label": [y for _, y in rows]}, features=features
            )
            for split, rows in parts.items()
        }
    ).save_to_disk(str(root / "cifar10"))


def _write_dtd(root: Path, per_class: int = 4) -> None:
    """DTD's archive layout, ``root/dtd/images/<class>/*.png``, 47 classes."""
    for i, (image, _) in enumerate(_digits(47 * per_class, start=300)):
        folder = root / "dtd" / "images" / f"texture_{i % 47:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"img_{i:04d}.png")


def _dinov2(root: Path) -> Path:
    """DINOv2-S (dropout already 0) whose image processor resizes to `IMAGE_SIZE`; the
    script reads the size as ``size["height"]``, which DINOv2's own processor lacks."""
    root.mkdir()
    for item in DINOV2.iterdir():
        if item.name != "preprocessor_config.json":
            (root / item.name).symlink_to(item)
    processor = json.loads((DINOV2 / "preprocessor_config.json").read_text())
    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor.update(size=square, crop_size=square)
    (root / "preprocessor_config.json").write_text(json.dumps(processor))
    return root


def _reference(tmp_path: Path, task: str, data: Path, model: Path) -> dict:
    spec = {
        "ref_src": REFERENCE_SRC,
        "hub_dir": str(data),
        "model": str(model),
        "threads": THREADS,
        "args": [
            "--dataset", task, "--model_size", "large", "--d", str(D),
            "--num_train_epochs", str(EPOCHS), "--seed", str(SEED),
        ],
    }  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "PYTHONPATH": "",  # their tree goes first on sys.path, in the worker
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    subprocess.run(
        [sys.executable, str(HERE / "reference_vision_worker.py"), str(tmp_path / "spec.json"),
         str(tmp_path / "reference.json")],
        check=True, env=env, cwd=data.parent,
    )  # fmt: skip
    return json.loads((tmp_path / "reference.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE_SRC, reason=SKIP_REASON)
@pytest.mark.skipif(not DINOV2.is_dir(), reason=f"no DINOv2-S at {DINOV2}")
@pytest.mark.parametrize(
    ("task", "forward_passes"),
    # cifar10: 180 of 200 train after the carve-out, 6 batches of 32 an epoch, 2 optimizer
    # steps (4 + a partial 2): warmup int(0.4 x 4) = 1, where rounding up would give 2.
    # dtd: 188 pooled -> 135 train, 5 batches an epoch.
    [("cifar10", 2 * 6), ("dtd", 2 * 5)],
)
def test_the_vision_preset_is_the_reference_run_step_for_step(
    tmp_path, monkeypatch, one_thread, task, forward_passes
):
    data = tmp_path / "work" / "data"  # the worker runs in work/, where data/dtd/images is
    if task == "cifar10":
        _write_cifar10(data)
    else:
        _write_dtd(data)
    model = _dinov2(tmp_path / "dinov2")
    ref = _reference(tmp_path, task, data, model)

    losses = record_run_losses(monkeypatch)
    argv = [
        "--adapter_type", "gpart", "--model_size", "large", "--tasks", task,
        "--seed", str(SEED), "--base_model", str(model), "--data_dir", str(data),
        "--output_dir", str(tmp_path / "logs"), "adapter.d", str(D),
        "training.epochs", str(EPOCHS), "data.image_size", str(IMAGE_SIZE),
    ]  # fmt: skip
    assert runner.main(argv) == 0
    (run,) = {p.parent for p in (tmp_path / "logs").rglob("results.json")}
    result = json.loads((run / "results.json").read_text())

    assert len(ref["losses"]) == len(losses) == forward_passes
    torch.testing.assert_close(
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(ref["losses"], dtype=torch.float64),
        rtol=1e-6,
        atol=0.0,
    )
    assert result["selection"]["last_step"] == ref["global_step"]
    splits = load_vision_splits(task, data, seed=SEED, selection_split="reference")
    ours = {
        "train": splits.train,
        "selection": splits.selection,
        "test": splits.test["test"],
    }
    for role, dataset in ours.items():
        assert [pixel_digest(im) for im in dataset["image"]] == ref[role], role
    # The selected model (the first epoch's here). Whether the head's bias decays does not
    # show at this size: it starts at zero and the first step is warmup at lr 0
    # (tests/test_trainer.py checks training.decay_biases_and_norms on its own).
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    theirs = {
        "theta": ref["theta"],
        "head_weight": ref["head_weight"],
        "head_bias": ref["head_bias"],
    }
    ours_state = {
        "theta": next(v for k, v in saved.items() if "gpart_theta" in k),
        "head_weight": next(
            v for k, v in saved.items() if "classifier" in k and k.endswith("weight")
        ),
        "head_bias": next(v for k, v in saved.items() if "classifier" in k and k.endswith("bias")),
    }
    for key, value in ours_state.items():
        torch.testing.assert_close(value, torch.tensor(theirs[key]), rtol=1e-5, atol=1e-7, msg=key)
    assert result["selection"]["best_value"] == pytest.approx(ref["best_selection_accuracy"])
    assert result["test"]["accuracy"] == pytest.approx(ref["test_results"]["eval_accuracy"])

"""The vision domain: ViT (or any `AutoModelForImageClassification` backbone: DeiT, DINOv2,
Swin) on image classification, on the shared run life cycle.

What is the domain's own: its data (`gpart.data.vision`: hub, torchvision or a local
folder; the reference's splits), the backbone with a new classifier head sized for the
dataset, the checkpoint's image transforms, and top-1 accuracy. The sweep, run
directories, Trainer, results and re-evaluation are `gpart.runners.core` /
`gpart.runners.evaluate`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpart.configs import ConfigError, ExperimentConfig, get_task
from gpart.data.loading import DataError, Splits
from gpart.data.vision import (
    image_collator,
    image_transforms,
    load_vision_raw,
    load_vision_splits,
    verify_images,
    with_image_transform,
)
from gpart.metrics.vision import make_compute_metrics
from gpart.runners.cli import build_runner_parser, cli_main
from gpart.runners.common import load_base_model, load_pretrained
from gpart.runners.core import Domain, run_sweep
from gpart.runners.evaluate import eval_main as _eval_main

if TYPE_CHECKING:
    from datasets import Dataset


class VisionDomain(Domain):
    """Image classification data, backbone, transforms and accuracy for `gpart.runners.core`."""

    name = "vision"

    def check_inputs(self, cfg: ExperimentConfig) -> None:
        """Also open every local image once: a corrupt file is named before training."""
        super().check_inputs(cfg)
        if cfg.data.data_dir is None:
            return
        for task in cfg.tasks:
            try:
                verify_images(Path(cfg.data.data_dir) / task)
            except DataError as exc:
                raise ConfigError(str(exc)) from None

    def load_splits(self, cfg: ExperimentConfig, task: str) -> Splits:
        return load_vision_splits(
            task,
            cfg.data.data_dir,
            model_selection=cfg.training.model_selection,
            seed=cfg.seed,
            max_train_samples=cfg.data.max_train_samples,
            selection_split=cfg.data.selection_split,
        )

    def load_eval_sets(
        self, cfg: ExperimentConfig, task: str, data_dir: str | None, split: str | None
    ) -> dict[str, Dataset]:
        if split is None or split == "test":
            # The run's own roles (DTD's test part is cut from the pooled images by seed).
            splits = load_vision_splits(
                task, data_dir, seed=cfg.seed, selection_split=cfg.data.selection_split
            )
            return dict(splits.test)
        raw = load_vision_raw(task, data_dir)
        if split not in raw:
            raise ConfigError(f"--split {split!r}: {task} has splits {', '.join(raw)}")
        return {split: raw[split]}

    def load_model(self, cfg: ExperimentConfig, task: str) -> tuple[Any, Any]:
        """The checkpoint's image processor and the backbone with a new classifier head."""
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        spec = get_task("vision", task)
        processor = load_pretrained(cfg, AutoImageProcessor, "an image processor")
        base = load_base_model(
            cfg,
            task,
            AutoModelForImageClassification,
            num_labels=spec.num_labels,
            ignore_mismatched_sizes=True,  # the head is new for every dataset
        )
        return processor, base

    def prepare_splits(self, splits: Splits, task: str, processor: Any, cfg: ExperimentConfig):
        train_tf, eval_tf = image_transforms(
            processor, cfg.data.image_size, augment=cfg.data.augment
        )
        return Splits(
            task=splits.task,
            train=with_image_transform(splits.train, train_tf),
            selection=None
            if splits.selection is None
            else with_image_transform(splits.selection, eval_tf),
            test={k: with_image_transform(v, eval_tf) for k, v in splits.test.items()},
            info=splits.info,
        )

    def prepare_dataset(
        self, dataset: Dataset, task: str, processor: Any, cfg: ExperimentConfig
    ) -> Dataset:
        _, eval_tf = image_transforms(processor, cfg.data.image_size, augment=False)
        return with_image_transform(dataset, eval_tf)

    def data_collator(self, processor: Any) -> Any:
        return image_collator

    def compute_metrics(self, task: str) -> Any:
        return make_compute_metrics()


VISION = VisionDomain()


def profile_data(cfg: ExperimentConfig, batches: int) -> dict[str, float]:
    """Images per second of the training input pipeline of the run's first dataset.

    Same data, transforms, batch size and ``training.num_workers`` as training, no model
    step: if this is below the training step's images/s, the accelerator waits for data.
    """
    from transformers import AutoImageProcessor

    from gpart.data.loading import loader_throughput

    task = cfg.tasks[0]
    single = cfg.for_task(task)
    splits = VISION.load_splits(single, task)
    processor = load_pretrained(cfg, AutoImageProcessor, "an image processor")
    train_tf, _ = image_transforms(processor, cfg.data.image_size, augment=cfg.data.augment)
    tc = single.training
    stats = loader_throughput(
        with_image_transform(splits.train, train_tf),
        image_collator,
        batch_size=tc.batch_size,
        num_workers=tc.num_workers,
        max_batches=batches,
    )
    print(
        f"{task}: loader {stats['examples_per_s']:.0f} images/s with {tc.num_workers} "
        f"worker(s), batch {tc.batch_size}, {cfg.data.image_size} px "
        f"({stats['batches']} batches in {stats['seconds']:.1f} s)"
    )
    return stats


def _positive_int(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of batches, got {text!r}")
    return int(text)


def _run(cfg: ExperimentConfig, flags: Any) -> int:
    if flags.profile_data:
        VISION.check_inputs(cfg)
        profile_data(cfg, flags.profile_data)
        return 0
    return run_sweep(VISION, cfg, flags)


def main(argv: Sequence[str] | None = None) -> int:
    """``finetune_ViT.py``: every (seed, dataset) of the command line, one run each."""
    parser = build_runner_parser(
        "vision",
        prog="finetune_ViT.py",
        description="Fine-tune a ViT (or any image backbone) on image classification.",
    )
    parser.add_argument(
        "--profile_data",
        type=_positive_int,
        default=0,
        metavar="N",
        help="time N batches of the input pipeline alone (images/s), then exit; no training",
    )
    return cli_main(_run, argv, domain="vision", parser=parser)


def eval_main(argv: Sequence[str] | None = None) -> int:
    """``eval_ViT.py``: re-evaluate saved vision runs without touching results.json."""
    return _eval_main(
        VISION,
        argv,
        prog="eval_ViT.py",
        description="Re-evaluate saved image-classification runs without touching results.json.",
    )


__all__ = ["VISION", "VisionDomain", "eval_main", "main"]

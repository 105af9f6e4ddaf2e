"""Image classification data: the hub, torchvision or a local folder; splits; transforms.

Sources (`gpart.configs.tasks.VISION_TASKS` says which dataset comes from where):

* the hub (``uoft-cs/cifar10`` ...) through `datasets.load_dataset`;
* torchvision (``torchvision:Flowers102``, ``FGVCAircraft``, ``DTD``), downloaded into
  ``cache_dir`` with their published splits;
* offline, ``<data_dir>/<dataset>/`` holding a ``datasets.save_to_disk`` folder, or an image
  folder: ``train/<class>/*.jpg|png|...`` with optional ``validation/`` and ``test/`` of the
  same classes (DTD's archive layout, ``images/<class>/``, holds all of DTD).

Whatever the source, every split becomes a `Dataset` with an ``image`` column (decoded
lazily: a path or bytes until a DataLoader worker reads it) and an integer ``label``.

Roles (`Splits`): the model-selection split is the source's validation split where it has
one, else 10 % of train; DTD pools every image and cuts it in three; the reported score is
test accuracy. ``model_selection="last"`` keeps everything but the test split for training.
How the cuts are drawn is ``data.selection_split``:

* ``"reference"`` (the presets): the paper authors' library calls (SamsungLabs/GPart at
  320f0c1, ``finetune_ViT.py:145-226``), so the members and their order are theirs:
  datasets' ``train_test_split(test_size=0.1, seed=seed)`` (selection = its ``test``
  part); DTD's images in path order (as datasets' ``imagefolder`` lists them),
  ``shuffle(seed=seed)``, ``train_test_split(test_size=0.28, seed=seed)`` and its test part
  ``train_test_split(test_size=0.715, seed=seed)`` into selection and test (4,060 / 450 /
  1,130 images).
* ``"balanced"``: a seeded permutation's last 10 % (members sorted); DTD cut 72/8/20.

Transforms follow the checkpoint's image processor (mean, std, resize) with torchvision's
v2 transforms: train ``RandomResizedCrop`` + horizontal flip, eval ``Resize`` +
``CenterCrop`` (anchor: transformers' ``run_image_classification.py`` example). They run in
`Dataset.with_transform`, i.e. per item in the DataLoader workers, so no image is decoded
before it is needed and none is kept in memory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from datasets import (
    ClassLabel,
    Dataset,
    Features,
    Image,
    load_from_disk,
)
from datasets.fingerprint import get_temporary_cache_files_directory

from gpart.configs.errors import first_line
from gpart.configs.tasks import ImageClassificationTask, get_task
from gpart.data.loading import DataError, Splits, load_hub_dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_DIRS = ("train", "validation", "test")
POOLED_DIR = "images"  # DTD's archive: every image in images/<class>/


def _spec(task: str | ImageClassificationTask) -> ImageClassificationTask:
    return task if isinstance(task, ImageClassificationTask) else get_task("vision", task)


# --------------------------------------------------------------------------------------------
# Local image folders


def image_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def load_image_folder(split_dir: Path, classes: list[str]) -> Dataset:
    """``<split_dir>/<class>/<image>`` -> a lazily decoded `Dataset` (labels in `classes` order)."""
    files, labels = [], []
    for label, name in enumerate(classes):
        found = image_files(split_dir / name)
        files += [str(p) for p in found]
        labels += [label] * len(found)
    if not files:
        raise DataError(
            f"{split_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders"
        )
    features = Features({"image": Image(), "label": ClassLabel(names=classes)})
    return Dataset.from_dict({"image": files, "label": labels}, features=features)


def verify_images(directory: Path) -> None:
    """Open every image below `directory` far enough to find a corrupt or unreadable file.

    `PIL.Image.verify` checks the file's structure without decoding the pixels, so this is
    quick; it runs before training so a bad file is one error line, not a crash mid-epoch.
    """
    from PIL import Image as PILImage

    for path in image_files(directory):
        try:
            with PILImage.open(path) as im:
                im.verify()
        except Exception as exc:  # PIL raises many types for a bad file
            raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _local_image_splits(root: Path) -> dict[str, Dataset]:
    if (root / POOLED_DIR).is_dir() and not (root / "train").is_dir():
        pooled = root / POOLED_DIR
        return {POOLED_DIR: load_image_folder(pooled, _class_dirs(pooled))}
    if not (root / "train").is_dir():
        raise DataError(
            f"{root}: expected a datasets.save_to_disk folder or an image folder "
            f"train/<class>/*.jpg|png (optional validation/, test/), or images/<class>/"
        )
    classes = _class_dirs(root / "train")
    out = {}
    for split in SPLIT_DIRS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        here = _class_dirs(split_dir)
        if here != classes:
            missing = sorted(set(classes) - set(here))
            extra = sorted(set(here) - set(classes))
            raise DataError(
                f"{split_dir}: its classes differ from train's"
                + (f"; missing {missing[:5]}" if missing else "")
                + (f"; not in train {extra[:5]}" if extra else "")
            )
        out[split] = load_image_folder(split_dir, classes)
    return out


# --------------------------------------------------------------------------------------------
# Sources


def _standardise(ds: Dataset, spec: ImageClassificationTask, where: str) -> Dataset:
    """Keep the image and label columns, named ``image`` / ``label``."""
    image_col = spec.image_column if spec.image_column in ds.column_names else None
    if image_col is None:
        images = [c for c, f in ds.features.items() if isinstance(f, Image)]
        if len(images) != 1:
            raise DataError(
                f"{where}: no image column {spec.image_column!r} (columns: {ds.column_names})"
            )
        image_col = images[0]
    label_col = spec.label_column
    if label_col not in ds.column_names:
        raise DataError(f"{where}: no label column {label_col!r} (columns: {ds.column_names})")
    ds = ds.select_columns([image_col, label_col])
    if image_col != "image":
        ds = ds.rename_column(image_col, "image")
    if label_col != "label":
        ds = ds.rename_column(label_col, "label")
    return ds


def _torchvision_splits(spec: ImageClassificationTask, cache_dir: str | None) -> dict[str, Dataset]:
    """Download a torchvision dataset (published splits) and list its files and labels."""
    import torchvision.datasets as tvd

    name = spec.source.split(":", 1)[1]
    root = Path(cache_dir or Path.home() / ".cache" / "gpart" / "torchvision")
    kwargs = {"annotation_level": "variant"} if name == "FGVCAircraft" else {}
    out = {}
    for ours, theirs in (("train", "train"), ("validation", "val"), ("test", "test")):
        try:
            ds = getattr(tvd, name)(str(root), split=theirs, download=True, **kwargs)
        except (OSError, RuntimeError) as exc:
            first = first_line(exc)
            raise DataError(
                f"cannot download {spec.name} with torchvision ({first}); offline, pass "
                f"--data_dir DIR with {spec.name}/train/<class>/*.jpg (and validation/, test/)"
            ) from None
        # torchvision keeps the file list and labels it reads images from; decoding stays
        # lazy this way (reading every image through ds[i] would decode all of them).
        files, labels = getattr(ds, "_image_files", None), getattr(ds, "_labels", None)
        if files is None or labels is None:
            raise DataError(f"torchvision's {name} no longer lists its files; use --data_dir")
        features = Features({"image": Image(), "label": ClassLabel(num_classes=spec.num_labels)})
        out[ours] = Dataset.from_dict(
            {"image": [str(f) for f in files], "label": [int(x) for x in labels]},
            features=features,
        )
    return out


def load_vision_raw(
    task: str | ImageClassificationTask,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | None = None,
) -> dict[str, Dataset]:
    """Every split the source has (``train``, ``validation``, ``test``, or DTD's ``images``).

    Raises:
        DataError: missing folder, unknown layout, missing columns, classes that differ
            between splits or from the dataset's class count.
    """
    spec = _spec(task)
    if data_dir is not None:
        root = Path(data_dir) / spec.name
        if not root.is_dir():
            raise DataError(f"{root}: no such directory (expected <data_dir>/{spec.name}/)")
        if (root / "dataset_dict.json").is_file():
            try:
                loaded = load_from_disk(str(root))
            except Exception as err:
                raise DataError(f"could not load the saved dataset in {root}: {err}") from err
            raw = {s: _standardise(ds, spec, f"{root} [{s}]") for s, ds in loaded.items()}
        else:
            raw = _local_image_splits(root)
        origin = str(root)
    elif spec.source.startswith("torchvision:"):
        raw, origin = _torchvision_splits(spec, cache_dir), spec.source
    else:
        loaded = load_hub_dataset(
            spec.source,
            cache_dir=cache_dir,
            offline_hint=f"pass --data_dir DIR with {spec.name}/train/<class>/*.jpg (or a "
            "save_to_disk folder)",
        )
        raw = {s: _standardise(ds, spec, f"{spec.source} [{s}]") for s, ds in loaded.items()}
        origin = spec.source
    for split, ds in raw.items():
        feature = ds.features["label"]
        if isinstance(feature, ClassLabel) and feature.num_classes != spec.num_labels:
            raise DataError(
                f"{origin} [{split}]: {feature.num_classes} classes, {spec.name} has "
                f"{spec.num_labels}"
            )
        labels = np.asarray(ds.with_format("numpy", columns=["label"])[:]["label"])
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_labels):
            raise DataError(
                f"{origin} [{split}]: labels outside [0, {spec.num_labels}) -- {spec.name} has "
                f"{spec.num_labels} classes"
            )
    if "test" not in raw and POOLED_DIR not in raw:
        raise DataError(f"{origin}: no test split (the reported score); found {sorted(raw)}")
    return raw


# --------------------------------------------------------------------------------------------
# Roles


def _seeded_cut(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into consecutive parts of the given
    fractions (the last part takes the rest); each part sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(fractions[:-1]) * n).astype(int)
    return [np.sort(p) for p in np.split(perm, bounds)]


# The reference's cuts (finetune_ViT.py:147-149 and the same at 155-157, 174-176, 183-185;
# DTD 216-224): datasets' train_test_split, so the members and their order are theirs.
REFERENCE_SELECTION_FRACTION = 0.1
REFERENCE_DTD_HELD_OUT = 0.28  # of all images: selection + test
REFERENCE_DTD_TEST = 0.715  # of those: test


def _in_path_order(pooled: Dataset) -> Dataset:
    """`pooled` ordered by ``<class>/<file>``, the order datasets' ``imagefolder`` lists
    DTD's ``images/`` in; torchvision hands out its train, val and test lists one after
    the other."""
    paths = [
        "/".join(Path(item["path"] or "").parts[-2:])
        for item in pooled.cast_column("image", Image(decode=False))["image"]
    ]
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return pooled if order == list(range(len(paths))) else pooled.select(order)


def _temporary_indices_file() -> str | None:
    """Where a shuffle or split of an arrow-backed dataset (hub, ``save_to_disk``) writes its
    indices: datasets would write them beside the dataset's files, i.e. into the user's data
    folder, and refuses ``keep_in_memory`` for such datasets. A fresh name in datasets' own
    session directory (removed at exit, what ``disable_caching`` would use) instead, per call:
    toggling the global caching switch would race with other threads. The members and their
    order do not depend on where the indices live."""
    return os.path.join(get_temporary_cache_files_directory(), f"indices-{uuid.uuid4().hex}.arrow")


def _split(ds: Dataset, test_size: float, seed: int) -> tuple[Dataset, Dataset]:
    if ds.cache_files:
        parts = ds.train_test_split(
            test_size=test_size,
            seed=seed,
            load_from_cache_file=False,
            train_indices_cache_file_name=_temporary_indices_file(),
            test_indices_cache_file_name=_temporary_indices_file(),
        )
    else:
        parts = ds.train_test_split(test_size=test_size, seed=seed, keep_in_memory=True)
    return parts["train"], parts["test"]


def _reference_resplit(pooled: Dataset, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    pooled = _in_path_order(pooled)
    if pooled.cache_files:
        shuffled = pooled.shuffle(
            seed=seed, load_from_cache_file=False, indices_cache_file_name=_temporary_indices_file()
        )
    else:
        shuffled = pooled.shuffle(seed=seed, keep_in_memory=True)
    train, held_out = _split(shuffled, REFERENCE_DTD_HELD_OUT, seed)
    selection, test = _split(held_out, REFERENCE_DTD_TEST, seed)
    return train, selection, test


def load_vision_splits(
    task: str | ImageClassificationTask,
    data_dir: str | Path | None = None,
    *,
    model_selection: str = "best",
    seed: int = 0,
    max_train_samples: int | None = None,
    cache_dir: str | None = None,
    selection_split: str = "balanced",
) -> Splits:
    """Load a dataset and give its examples the train / selection / test roles.

    ``selection_split``: ``"reference"`` (the paper authors' cuts) or ``"balanced"``
    (this module's docstring).
    """
    if selection_split not in ("balanced", "reference"):
        raise ValueError(
            f"selection_split must be 'balanced' or 'reference', got {selection_split!r}"
        )
    reference = selection_split == "reference"
    spec = _spec(task)
    raw = load_vision_raw(spec, data_dir, cache_dir=cache_dir)
    best = model_selection == "best"
    info: dict[str, Any] = {"strategy": model_selection, "size": 0, "split_seed": seed}
    if reference:
        info["rule"] = "reference"
    if POOLED_DIR in raw or spec.selection == "resplit":
        from datasets import concatenate_datasets

        pooled = (
            concatenate_datasets(list(raw.values())) if len(raw) > 1 else next(iter(raw.values()))
        )
        if reference:
            train, selection, test = _reference_resplit(pooled, seed)
            fractions = (1 - REFERENCE_DTD_HELD_OUT, REFERENCE_DTD_HELD_OUT, REFERENCE_DTD_TEST)
            info["resplit"] = list(fractions)
            if not best:
                train = concatenate_datasets([train, selection])
                selection = None
        else:
            fractions = spec.resplit or (0.72, 0.08, 0.2)
            train_i, sel_i, test_i = _seeded_cut(len(pooled), fractions, seed)
            if not best:
                train_i = np.sort(np.concatenate([train_i, sel_i]))
            train, test = pooled.select(train_i), pooled.select(test_i)
            selection = pooled.select(sel_i) if best else None
            info["resplit"] = list(fractions)
    else:
        train, test = raw["train"], raw["test"]
        selection = None
        if best and "validation" in raw:
            selection = raw["validation"]
            info["source"] = "validation"
        elif best:
            if len(train) < 2:
                raise DataError(
                    f"{spec.name}: too few training images to hold out a selection split"
                )
            if reference:
                fraction = REFERENCE_SELECTION_FRACTION
                train, selection = _split(train, fraction, seed)
            else:
                fraction = spec.selection_fraction
                keep, select = _seeded_cut(len(train), (1 - fraction, fraction), seed)
                if len(select) == 0 or len(keep) == 0:
                    raise DataError(
                        f"{spec.name}: too few training images to hold out a selection split"
                    )
                train, selection = train.select(keep), train.select(select)
            info.update(source="train", fraction=fraction)
    if selection is not None:
        info["size"] = len(selection)
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.select(range(max_train_samples))
    info["train_size"] = len(train)
    info["test_sizes"] = {"test": len(test)}
    return Splits(task=spec, train=train, selection=selection, test={"test": test}, info=info)


# --------------------------------------------------------------------------------------------
# Transforms and batches


def image_transforms(
    processor: Any, image_size: int, *, augment: bool
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``(train, eval)`` transforms: RGB PIL image -> normalised float tensor.

    Mean and std come from the checkpoint's image processor; eval resizes to the
    processor's ``shortest_edge`` scaled to `image_size` (256 for a 224 crop) where it has
    one, else straight to `image_size`, then center-crops `image_size`.
    """
    import torch
    from torchvision.transforms import v2

    mean = getattr(processor, "image_mean", None)
    std = getattr(processor, "image_std", None)
    if mean is None or std is None:
        raise DataError(f"{type(processor).__name__} has no image_mean / image_std")
    size = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) or {}
    if "shortest_edge" in size:
        reference = crop.get("height", size["shortest_edge"])
        resize = round(size["shortest_edge"] * image_size / reference)
    else:
        resize = image_size
    # torchvision's ToTensor arithmetic (float, then / 255), which the reference uses
    # (finetune_ViT.py:267-293); ToDtype(scale=True) multiplies by 1/255, one ulp away.
    to_tensor = [
        v2.ToImage(),
        v2.ToDtype(torch.float32),
        v2.Lambda(_to_unit_range),
        v2.Normalize(mean, std),
    ]
    evaluate = v2.Compose(
        [v2.Resize(resize, antialias=True), v2.CenterCrop(image_size), *to_tensor]
    )
    if not augment:
        return evaluate, evaluate
    train = v2.Compose(
        [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(), *to_tensor]
    )
    return train, evaluate


def _to_unit_range(image: Any) -> Any:
    return image.div(255)


def with_image_transform(dataset: Dataset, transform: Callable[[Any], Any]) -> Dataset:
    """`dataset` decoded and transformed on access (in the DataLoader's workers)."""

    def apply(batch: Mapping[str, list]) -> dict[str, list]:
        return {
            "pixel_values": [transform(im.convert("RGB")) for im in batch["image"]],
            "labels": list(batch["label"]),
        }

    return dataset.with_transform(apply)


def image_collator(examples: list[Mapping[str, Any]]) -> dict[str, Any]:
    import torch

    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([int(e["labels"]) for e in examples]),
    }


__all__ = [
    "image_collator",
    "image_transforms",
    "load_image_folder",
    "load_vision_raw",
    "load_vision_splits",
    "verify_images",
    "with_image_transform",
]

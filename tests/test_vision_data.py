"""Vision data: every layout and source gives the same roles, seeded and reproducible."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

from gpart.data.loading import DataError
from gpart.data.vision import image_transforms, load_vision_raw, load_vision_splits
from vision_env import write_image_folder


def test_dtd_archive_layout_pools_and_cuts_72_8_20(tmp_path):
    # DTD's archive: images/<class>/, 47 classes; the split is cut from all images by seed.
    root = tmp_path / "data" / "dtd"
    write_image_folder(root, classes=47, sizes=(("images", 5),))
    splits = load_vision_splits("dtd", tmp_path / "data", seed=3)
    sizes = (len(splits.train), len(splits.selection), len(splits.test["test"]))
    assert sizes == (169, 19, 47) and sum(sizes) == 235  # 72 / 8 / 20 % of 235
    again = load_vision_splits("dtd", tmp_path / "data", seed=3)
    assert again.test["test"]["image"][0].size == splits.test["test"]["image"][0].size
    other = load_vision_splits("dtd", tmp_path / "data", seed=4)
    assert [r for r in other.train["label"]] != [r for r in splits.train["label"]]
    last = load_vision_splits("dtd", tmp_path / "data", seed=3, model_selection="last")
    assert last.selection is None and len(last.train) == 169 + 19
    assert splits.info["resplit"] == [0.72, 0.08, 0.2]


def test_dtd_reference_cut_is_the_papers_4060_450_1130_whatever_order_the_source_lists(
    monkeypatch,
):
    # DTD's 5,640 images, 47 classes x 120; torchvision lists them split by split, the
    # reference's imagefolder in path order: the cut is made in path order either way.
    import gpart.data.vision as vision

    paths = [f"/x/dtd/images/c{c:02d}/{c:02d}_{i:03d}.jpg" for c in range(47) for i in range(120)]
    features = Features({"image": Image(), "label": ClassLabel(num_classes=47)})

    def pooled(order):
        rows = {"image": [paths[i] for i in order], "label": [i // 120 for i in order]}
        return {"images": Dataset.from_dict(rows, features=features)}

    def names(ds):
        return [item["path"] for item in ds.cast_column("image", Image(decode=False))["image"]]

    cuts = []
    for order in (range(len(paths)), np.random.default_rng(0).permutation(len(paths))):
        monkeypatch.setattr(vision, "load_vision_raw", lambda *a, order=order, **k: pooled(order))
        splits = load_vision_splits("dtd", seed=0, selection_split="reference")
        cuts.append([names(splits.train), names(splits.selection), names(splits.test["test"])])
    assert [len(part) for part in cuts[0]] == [4060, 450, 1130]
    assert cuts[0] == cuts[1]
    assert len(set(sum(cuts[0], []))) == 5640
    last = load_vision_splits("dtd", seed=0, selection_split="reference", model_selection="last")
    assert last.selection is None and len(last.train) == 4060 + 450
    assert names(last.test["test"]) == cuts[0][2]


def test_save_to_disk_and_hub_column_names_are_standardised(tmp_path):
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(20)]
    features = Features(
        {
            "img": Image(),
            "fine_label": ClassLabel(num_classes=100),
            "coarse": ClassLabel(num_classes=20),
        }
    )
    rows = {"img": pixels, "fine_label": list(range(20)), "coarse": [0] * 20}
    saved = DatasetDict({s: Dataset.from_dict(rows, features=features) for s in ("train", "test")})
    saved.save_to_disk(tmp_path / "data" / "cifar100")
    raw = load_vision_raw("cifar100", tmp_path / "data")
    assert raw["train"].column_names == ["image", "label"]
    assert raw["test"]["label"][:3] == [0, 1, 2]
    splits = load_vision_splits("cifar100", tmp_path / "data", seed=0)
    assert (len(splits.train), len(splits.selection)) == (18, 2)  # a seeded 10 % of train
    # The reference's carve-out, datasets' train_test_split: nothing written into the data
    # folder (its indices go to a temporary directory), the same members every time.
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    ref = load_vision_splits("cifar100", tmp_path / "data", seed=0, selection_split="reference")
    assert (len(ref.train), len(ref.selection)) == (18, 2)
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == before
    again = load_vision_splits("cifar100", tmp_path / "data", seed=0, selection_split="reference")
    assert again.selection["label"] == ref.selection["label"]
    # ... without touching datasets' process-wide caching switch (other threads read it)
    assert datasets.is_caching_enabled()


def test_torchvision_sources_list_files_and_keep_the_published_splits(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    write_image_folder(tmp_path / "img", classes=2, sizes=(("all", 3),))
    files = sorted((tmp_path / "img").rglob("*.png"))
    seen = []

    class FakeFlowers:
        def __init__(self, root, split, download):
            seen.append((split, download))
            self._image_files = files[: {"train": 4, "val": 2, "test": 3}[split]]
            self._labels = [i % 102 for i in range(len(self._image_files))]

    monkeypatch.setattr(tvd, "Flowers102", FakeFlowers, raising=False)
    splits = load_vision_splits("flowers102", None, cache_dir=str(tmp_path / "tv"))
    assert [s for s, _ in seen] == ["train", "val", "test"] and all(d for _, d in seen)
    assert (len(splits.train), len(splits.selection), len(splits.test["test"])) == (4, 2, 3)
    assert splits.info["source"] == "validation"
    assert splits.train[0]["image"].mode in ("RGB", "L", "RGBA")  # decoded on access


def test_labels_beyond_the_dataset_are_refused(tmp_path):
    write_image_folder(tmp_path / "data" / "eurosat", classes=11)
    with pytest.raises(DataError, match="11 classes, eurosat has 10"):
        load_vision_raw("eurosat", tmp_path / "data")


def test_transforms_follow_the_processor(tmp_path):
    from PIL import Image as PILImage
    from transformers import BitImageProcessor

    proc = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    train, evaluate = image_transforms(proc, 56, augment=True)
    img = PILImage.new("RGB", (100, 60), (255, 0, 0))
    assert tuple(evaluate(img).shape) == (3, 56, 56) and tuple(train(img).shape) == (3, 56, 56)
    # Normalised with the processor's statistics: pure red is (1 - mean) / std in channel 0.
    expected = (1 - proc.image_mean[0]) / proc.image_std[0]
    assert float(evaluate(img)[0, 28, 28]) == pytest.approx(expected, abs=1e-4)
    _, same = image_transforms(proc, 56, augment=False)
    assert same is not None

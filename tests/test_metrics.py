"""Metrics: our numpy implementations and GLUE scoring against scikit-learn / scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from transformers import EvalPrediction

from gpart.configs import ConfigError
from gpart.configs.tasks import GLUE_TASKS
from gpart.metrics import (
    accuracy,
    average_ranks,
    binary_f1,
    matthews_corrcoef,
    pearson,
    spearman,
    strip_metric_prefix,
)
from gpart.metrics.glue import (
    glue_metrics,
    logits_to_predictions,
    make_compute_metrics,
    merge_split_metrics,
)

TASK_METRICS = {name: spec.metrics for name, spec in GLUE_TASKS.items()}

SEEDS = range(5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_classification_metrics_match_sklearn(seed, num_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.integers(0, num_classes, n)
    # Predictions correlated with the labels, so MCC is away from 0.
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, num_classes, n))
    assert accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
    assert matthews_corrcoef(p, y) == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-12)
    if num_classes == 2:
        assert binary_f1(p, y) == pytest.approx(skm.f1_score(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 300))
    y = np.round(rng.uniform(0, 5, n), 1)  # rounded: plenty of ties, like STS-B
    p = y + rng.normal(0, 1.5, n)
    assert pearson(p, y) == pytest.approx(stats.pearsonr(p, y)[0], abs=1e-10)
    assert spearman(p, y) == pytest.approx(stats.spearmanr(p, y)[0], abs=1e-10)
    p_tied = np.round(p)  # ties on both sides
    assert spearman(p_tied, y) == pytest.approx(stats.spearmanr(p_tied, y)[0], abs=1e-10)


def test_average_ranks_match_scipy():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(average_ranks(x), stats.rankdata(x))


def test_degenerate_inputs_give_zero_like_sklearn():
    y = np.array([0, 1, 1, 0, 1])
    const = np.ones(5, dtype=int)
    assert matthews_corrcoef(const, y) == 0.0 == skm.matthews_corrcoef(y, const)
    zeros = np.zeros(5, dtype=int)
    assert binary_f1(zeros, zeros) == 0.0
    assert pearson(np.full(5, 2.5), y) == 0.0  # a constant regression head: not NaN
    assert spearman(np.full(5, 2.5), y) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="zero examples"):
        accuracy([], [])


def test_primary_metric_per_task():
    # What GLUE PEFT papers report: MCC for CoLA, Pearson for STS-B, accuracy elsewhere.
    primary = {name: spec.primary_metric for name, spec in GLUE_TASKS.items()}
    assert primary.pop("cola") == "mcc"
    assert primary.pop("stsb") == "pearson"
    assert set(primary.values()) == {"accuracy"}
    with pytest.raises(ConfigError, match="not a glue task"):
        glue_metrics("squad", [1], [1])


@pytest.mark.parametrize("task", list(TASK_METRICS))
def test_compute_metrics_from_trainer_outputs(task):
    rng = np.random.default_rng(0)
    n = 64
    if task == "stsb":
        labels = rng.uniform(0, 5, n).astype(np.float32)
        logits = (labels + rng.normal(0, 1, n)).astype(np.float32)[:, None]  # (n, 1) head
        preds = logits[:, 0]
    else:
        k = 3 if task == "mnli" else 2
        labels = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k)).astype(np.float32)
        preds = logits.argmax(-1)
    out = make_compute_metrics(task)(EvalPrediction(predictions=logits, label_ids=labels))
    assert set(out) == set(TASK_METRICS[task])
    ref = {
        "accuracy": lambda: skm.accuracy_score(labels, preds),
        "f1": lambda: skm.f1_score(labels, preds),
        "mcc": lambda: skm.matthews_corrcoef(labels, preds),
        "pearson": lambda: stats.pearsonr(preds, labels)[0],
        "spearman": lambda: stats.spearmanr(preds, labels)[0],
    }
    for name, value in out.items():
        assert isinstance(value, float)
        assert value == pytest.approx(ref[name](), abs=1e-6)
    # Tuple outputs (logits, hidden states) are handled too.
    tup = make_compute_metrics(task)(EvalPrediction(predictions=(logits, logits), label_ids=labels))
    assert tup == out


def test_logits_to_predictions_shapes():
    assert logits_to_predictions("rte", np.array([[0.1, 0.9], [2.0, -1.0]])).tolist() == [1, 0]
    assert logits_to_predictions("stsb", np.array([[1.5], [3.0]])).tolist() == [1.5, 3.0]
    with pytest.raises(ValueError, match="shape"):
        logits_to_predictions("rte", np.array([0.1, 0.9]))


def test_glue_metrics_on_known_values():
    # 4 of 5 right; TP=2, FP=1, FN=0 -> F1 = 4/5
    out = glue_metrics("mrpc", [1, 1, 0, 1, 0], [1, 1, 0, 0, 0])
    assert out == {"accuracy": 0.8, "f1": pytest.approx(0.8)}


def test_split_metrics_for_results_json():
    evaluated = {
        "test_accuracy": 0.8,
        "test_loss": 0.4,
        "test_runtime": 1.2,
        "test_samples_per_second": 9.0,
        "test_steps_per_second": 1.0,
        "epoch": 3.0,
    }
    assert strip_metric_prefix(evaluated, "test") == {"accuracy": 0.8}
    merged = merge_split_metrics(
        "mnli",
        {"validation_matched": {"accuracy": 0.8}, "validation_mismatched": {"accuracy": 0.7}},
    )
    assert merged == {"accuracy": 0.8, "accuracy_mm": 0.7}
    with pytest.raises(ValueError, match=r"metrics \['f1'\] missing"):
        merge_split_metrics("mrpc", {"validation": {"accuracy": 0.8}})
    with pytest.raises(ValueError, match="unexpected split"):
        merge_split_metrics("rte", {"test": {"accuracy": 0.8}})

"""Task metadata per domain: where the data lives, which columns to read, how to score.

Metadata is fixed facts about a dataset (not hyperparameters), so it is frozen and not
overridable from the command line; hyperparameters per task live in `TaskConfig` presets.
Runners read it through `get_task(domain, name)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gpart.configs.errors import ConfigError, did_you_mean


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What every task has: a hub source (or the same layout in ``--data_dir``) and metrics.

    `splits` maps role (``train``, ``eval``) to the split name in the source; GLUE papers
    report the validation set, since the test labels are hidden.
    """

    name: str
    domain: str
    source: str
    subset: str | None = None
    splits: MappingProxyType = field(
        default_factory=lambda: MappingProxyType({"train": "train", "eval": "validation"})
    )
    metrics: tuple[str, ...]
    primary_metric: str

    def __post_init__(self) -> None:
        # A typo here would make model selection silently track the wrong number.
        if self.primary_metric not in self.metrics:
            raise ValueError(f"{self.name}: primary_metric {self.primary_metric!r} not in metrics")


@dataclass(frozen=True, kw_only=True)
class TextClassificationTask(TaskSpec):
    """GLUE-style sentence (pair) classification or regression."""

    text_columns: tuple[str, ...]
    label_column: str = "label"
    # 1 means regression (STS-B): MSE loss, a single output.
    num_labels: int

    @property
    def problem_type(self) -> Literal["regression", "single_label_classification"]:
        return "regression" if self.num_labels == 1 else "single_label_classification"


@dataclass(frozen=True, kw_only=True)
class ImageClassificationTask(TaskSpec):
    image_column: str
    label_column: str
    num_labels: int

    @property
    def problem_type(self) -> Literal["single_label_classification"]:
        return "single_label_classification"


@dataclass(frozen=True, kw_only=True)
class MathReasoningTask(TaskSpec):
    """Generative evaluation: the model answers `question_column`; the reference answer is
    extracted from `answer_column` in `answer_format` (GSM8K's ``#### 42`` or ``\\boxed{}``)."""

    question_column: str
    answer_column: str
    answer_format: Literal["gsm8k", "boxed", "plain"]


def _splits(train: str = "train", eval: str = "validation") -> MappingProxyType:
    return MappingProxyType({"train": train, "eval": eval})


def _glue(name: str) -> TextClassificationTask:
    """A GLUE task's metadata, read from the one place each fact lives: columns, labels and
    splits from `gpart.data.glue`, metric names from `gpart.training.metrics`."""
    from gpart.data.glue import GLUE_TASKS as DATA
    from gpart.training.metrics import TASK_METRICS, primary_metric

    data = DATA[name]
    return TextClassificationTask(
        name=name,
        domain="glue",
        source="nyu-mll/glue",
        subset=name,
        splits=_splits(eval=data.test_split_names[0]),
        text_columns=data.text_columns,
        num_labels=data.num_labels,
        metrics=TASK_METRICS[name],
        primary_metric=primary_metric(name),
    )


# Primary metrics follow what GLUE PEFT papers (LoRA, VeRA, Uni-LoRA) report: Matthews
# correlation for CoLA, Pearson for STS-B, accuracy elsewhere (MNLI: matched validation).
GLUE_TASKS: dict[str, TextClassificationTask] = {
    name: _glue(name) for name in ("cola", "sst2", "mrpc", "qnli", "rte", "stsb", "mnli", "qqp")
}

VISION_TASKS: dict[str, ImageClassificationTask] = {
    t.name: t
    for t in (
        ImageClassificationTask(
            name="cifar10",
            domain="vision",
            source="uoft-cs/cifar10",
            splits=_splits(eval="test"),
            image_column="img",
            label_column="label",
            num_labels=10,
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        ImageClassificationTask(
            name="cifar100",
            domain="vision",
            source="uoft-cs/cifar100",
            splits=_splits(eval="test"),
            image_column="img",
            label_column="fine_label",
            num_labels=100,
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
    )
}

# Math trains on MetaMathQA and evaluates on GSM8K / MATH: the task names the evaluation
# set; `train_source` in the domain spec names the shared training set.
MATH_TASKS: dict[str, MathReasoningTask] = {
    t.name: t
    for t in (
        MathReasoningTask(
            name="gsm8k",
            domain="math",
            source="openai/gsm8k",
            subset="main",
            splits=_splits(eval="test"),
            question_column="question",
            answer_column="answer",
            answer_format="gsm8k",
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
        MathReasoningTask(
            name="math",
            domain="math",
            # The 5,000-problem MATH test set; the original hendrycks repo is no longer hosted.
            source="EleutherAI/hendrycks_math",
            splits=_splits(eval="test"),
            question_column="problem",
            answer_column="solution",
            answer_format="boxed",
            metrics=("accuracy",),
            primary_metric="accuracy",
        ),
    )
}


@dataclass(frozen=True)
class DomainSpec:
    """A runner's domain: its tasks and how models and adapters are built for it.

    `auto_model` names the transformers Auto class (resolved lazily so importing the
    configs does not import transformers); `peft_task_type` is the peft `TaskType` name,
    None where peft has none (image classification: the head is named explicitly).
    """

    name: str
    tasks: MappingProxyType
    # What a run trains when --tasks is not given (GLUE: the paper's six tasks).
    default_tasks: tuple[str, ...]
    auto_model: str
    peft_task_type: str | None
    # Training set shared by every task of the domain (math: MetaMathQA), else None.
    train_source: str | None = None


DOMAINS: dict[str, DomainSpec] = {
    "glue": DomainSpec(
        "glue",
        MappingProxyType(GLUE_TASKS),
        ("cola", "sst2", "mrpc", "qnli", "rte", "stsb"),
        "AutoModelForSequenceClassification",
        "SEQ_CLS",
    ),
    "vision": DomainSpec(
        "vision",
        MappingProxyType(VISION_TASKS),
        ("cifar10",),
        "AutoModelForImageClassification",
        None,
    ),
    "math": DomainSpec(
        "math",
        MappingProxyType(MATH_TASKS),
        ("gsm8k",),
        "AutoModelForCausalLM",
        "CAUSAL_LM",
        train_source="meta-math/MetaMathQA",
    ),
}


def get_domain(name: str) -> DomainSpec:
    try:
        return DOMAINS[name]
    except KeyError:
        raise ConfigError(
            f"domain {name!r} is unknown{did_you_mean(name, DOMAINS)}; choices: {', '.join(DOMAINS)}"
        ) from None


def get_task(domain: str, name: str) -> TaskSpec:
    """Metadata of task `name` in `domain`; `ConfigError` with the closest name for a typo."""
    tasks = get_domain(domain).tasks
    try:
        return tasks[name]
    except KeyError:
        raise ConfigError(
            f"task {name!r} is not a {domain} task{did_you_mean(name, tasks)}; "
            f"choices: {', '.join(tasks)}"
        ) from None

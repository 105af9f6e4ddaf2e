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
    # How papers write the name (``SST-2``); None: the name itself.
    display_name: str | None = None
    subset: str | None = None
    splits: MappingProxyType = field(
        default_factory=lambda: MappingProxyType({"train": "train", "eval": "validation"})
    )
    metrics: tuple[str, ...]
    primary_metric: str
    # Whether a larger primary metric is better (accuracy) or worse (a loss): model
    # selection and early stopping read it.
    greater_is_better: bool = True

    def __post_init__(self) -> None:
        # A typo here would make model selection silently track the wrong number.
        if self.primary_metric not in self.metrics:
            raise ValueError(f"{self.name}: primary_metric {self.primary_metric!r} not in metrics")


@dataclass(frozen=True, kw_only=True)
class TextClassificationTask(TaskSpec):
    """GLUE-style sentence (pair) classification or regression.

    `label_names` are the class names in label-id order, empty for regression (STS-B: MSE
    loss, one output). `test_splits` are the splits whose score is reported, each with the
    suffix its metrics get in ``results.json`` (MNLI: matched plain, mismatched ``_mm``).
    """

    display_name: str
    text_columns: tuple[str, ...]
    label_column: str = "label"
    label_names: tuple[str, ...]
    test_splits: tuple[tuple[str, str], ...] = (("validation", ""),)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Output size of the head: 1 for regression."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def problem_type(self) -> Literal["regression", "single_label_classification"]:
        return "regression" if self.is_regression else "single_label_classification"

    @property
    def test_split_names(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.test_splits)

    @property
    def split_names(self) -> tuple[str, ...]:
        """Every split a run loads: train plus the reported one(s)."""
        return ("train", *self.test_split_names)


@dataclass(frozen=True, kw_only=True)
class ImageClassificationTask(TaskSpec):
    """An image classification dataset and how its three roles are cut.

    `selection` says where the model-selection split comes from: ``"carve"`` takes a seeded
    `selection_fraction` out of train, ``"validation"`` uses the source's own validation
    split, ``"resplit"`` pools every split and cuts the seeded `resplit` fractions (train,
    selection, test; DTD's 72/8/20). The reported score is accuracy on ``test``.
    """

    image_column: str = "image"
    label_column: str = "label"
    num_labels: int
    selection: Literal["carve", "validation", "resplit"] = "carve"
    selection_fraction: float = 0.1
    resplit: tuple[float, float, float] | None = None
    # Other names this dataset goes by (the reference code's spellings).
    aliases: tuple[str, ...] = ()

    @property
    def problem_type(self) -> Literal["single_label_classification"]:
        return "single_label_classification"


@dataclass(frozen=True)
class LocalShape:
    """A local file's columns for an evaluation set: the `question` column, the `answer`
    column, how the answer column holds the reference (`answer_format`: ``solution``, the
    reference is read out of it by the grading rules; ``plain``, it is the reference), and
    where files of this shape come from (`origin`, for messages)."""

    question: str
    answer: str
    answer_format: Literal["solution", "plain"]
    origin: str

    def __str__(self) -> str:
        return f"{self.question}/{self.answer} ({self.origin})"


# The shapes the math evaluation sets are passed around in, tried in this order: a file
# with problem, solution *and* answer (MATH-500's own) uses its answer column.
MATH_LOCAL_SHAPES: tuple[LocalShape, ...] = (
    # a solution ending in `#### <number>`
    LocalShape("question", "answer", "solution", "GSM8K"),
    # the answer column is the reference itself
    LocalShape("problem", "answer", "plain", "MATH-500"),
    # the reference is the solution's last \boxed{}
    LocalShape("problem", "solution", "solution", "MATH"),
    # MetaMath's eval files (MATH_test.jsonl, GSM8K_test.jsonl): the output holds the
    # reference as the dataset's rules read it (`####` or a box)
    LocalShape("instruction", "output", "solution", "MetaMath"),
    LocalShape("query", "response", "solution", "MetaMath"),
)


@dataclass(frozen=True, kw_only=True)
class MathEvalTask(TaskSpec):
    """An evaluation set scored by generation: every fact of it, read by every part of
    ``eval_math.py`` (loading, prompts, generation, grading, tables).

    The model answers `question_column` of the `splits["eval"]` split of `source` (the
    `subsets` read one after another and concatenated in this order; empty: `subset`
    alone). The reference answer sits in `answer_column` in `answer_format`: ``solution``,
    a worked solution the `grading` rules read the reference out of (GSM8K's
    ``#### 42``, MATH's last ``\\boxed{}``), or ``plain``, the column is the answer
    itself. A local file may come in any of `local_shapes` instead. `grading` names the
    rules that extract a prediction and compare it with the reference (``gsm8k``:
    numbers; ``math``: LaTeX answers; `gpart.evaluation.scoring`). Without a run's own
    template the prompt is `prompt_template` (`gpart.data.math.TEMPLATES`); generation
    stops after `max_new_tokens`.
    """

    question_column: str
    answer_column: str
    answer_format: Literal["solution", "plain"]
    subsets: tuple[str, ...] = ()
    local_shapes: tuple[LocalShape, ...] = MATH_LOCAL_SHAPES
    grading: Literal["gsm8k", "math"]
    prompt_template: str = "plain"
    max_new_tokens: int
    metrics: tuple[str, ...] = ("accuracy",)
    primary_metric: str = "accuracy"

    @property
    def split(self) -> str:
        """The split of `source` that is evaluated."""
        return self.splits["eval"]


@dataclass(frozen=True, kw_only=True)
class CausalLMTrainingTask(TaskSpec):
    """Supervised fine-tuning of a decoder on (`query_column`, `response_column`) pairs.

    The run's own score is the language-model loss on a held-out slice of the training
    data (lower is better); what the fine-tuned model is worth is measured by generation
    on the evaluation tasks (`MathEvalTask`), a separate step.
    """

    query_column: str = "query"
    response_column: str = "response"


def _splits(train: str = "train", eval: str = "validation") -> MappingProxyType:
    return MappingProxyType({"train": train, "eval": eval})


def _glue(
    name: str,
    display_name: str,
    text_columns: tuple[str, ...],
    label_names: tuple[str, ...],
    metrics: tuple[str, ...] = ("accuracy",),
    test_splits: tuple[tuple[str, str], ...] = (("validation", ""),),
) -> TextClassificationTask:
    return TextClassificationTask(
        name=name,
        display_name=display_name,
        domain="glue",
        source="nyu-mll/glue",
        subset=name,
        splits=_splits(eval=test_splits[0][0]),
        text_columns=text_columns,
        label_names=label_names,
        test_splits=test_splits,
        metrics=metrics,
        # The first metric is the one GLUE PEFT papers (LoRA, VeRA, Uni-LoRA) report:
        # Matthews correlation for CoLA, Pearson for STS-B, accuracy elsewhere.
        primary_metric=metrics[0],
    )


# GLUE as the papers report it: the validation split is the reported score (test labels are
# hidden); MNLI reports matched (and mismatched as `_mm`). F1 is of label 1 (`equivalent`,
# `duplicate`), as GLUE computes it. Ordered as tables list them.
GLUE_TASKS: dict[str, TextClassificationTask] = {
    t.name: t
    for t in (
        _glue("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("mcc",)),
        _glue("sst2", "SST-2", ("sentence",), ("negative", "positive")),
        _glue(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            ("accuracy", "f1"),
        ),
        _glue("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment")),
        _glue("rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
        _glue("stsb", "STS-B", ("sentence1", "sentence2"), (), ("pearson", "spearman")),
        _glue(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            test_splits=(("validation_matched", ""), ("validation_mismatched", "_mm")),
        ),
        _glue(
            "qqp",
            "QQP",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("accuracy", "f1"),
        ),
    )
}


def _vision(name: str, display: str, source: str, num_labels: int, **kw) -> ImageClassificationTask:
    return ImageClassificationTask(
        name=name,
        display_name=display,
        domain="vision",
        source=source,
        splits=_splits(eval="test"),
        num_labels=num_labels,
        metrics=("accuracy",),
        primary_metric="accuracy",
        **kw,
    )


# The nine datasets of the GPart paper's ViT experiments (the FourierFT / Uni-LoRA suite),
# full training sets, with the reference code's splits: a seeded 10 % of train for model
# selection where the source has no validation split, the published splits where it has.
VISION_TASKS: dict[str, ImageClassificationTask] = {
    t.name: t
    for t in (
        _vision("cifar10", "CIFAR-10", "uoft-cs/cifar10", 10, image_column="img"),
        _vision(
            "cifar100",
            "CIFAR-100",
            "uoft-cs/cifar100",
            100,
            image_column="img",
            label_column="fine_label",
        ),
        # torchvision's Flowers102 / FGVCAircraft / DTD ship the published splits; offline,
        # any of them is an image folder under --data_dir.
        _vision("flowers102", "Flowers102", "torchvision:Flowers102", 102, selection="validation"),
        _vision("fgvc", "FGVC", "torchvision:FGVCAircraft", 100, selection="validation"),
        _vision(
            "dtd", "DTD", "torchvision:DTD", 47, selection="resplit", resplit=(0.72, 0.08, 0.2)
        ),
        _vision("eurosat", "EuroSAT", "blanchon/EuroSAT_RGB", 10, selection="validation"),
        _vision("resisc45", "RESISC45", "timm/resisc45", 45, selection="validation"),
        _vision("oxfordpets", "OxfordPets", "timm/oxford-iiit-pet", 37),
        _vision(
            "stanfordcars",
            "StanfordCars",
            "tanganke/stanford_cars",
            196,
            aliases=("standfordcars",),
        ),
    )
}

# Math trains on MetaMathQA and evaluates on GSM8K / MATH. Training is one task,
# `metamathqa` (what `finetune_metamath.py --tasks` runs, and its default): a run is one
# fine-tuning of the model, whose held-out loss is its own number. `gsm8k` and `math` are
# the evaluation sets the trained model is scored on by generation; they are tasks of the
# domain so that evaluation, presets and tables name them, but nothing trains on them (the
# training runner refuses them with a pointer to `metamathqa`).
METAMATHQA = CausalLMTrainingTask(
    name="metamathqa",
    display_name="MetaMathQA",
    domain="math",
    source="meta-math/MetaMathQA",
    # one split on the hub; the held-out slice is cut from its end (gpart.data.math)
    splits=MappingProxyType({"train": "train", "eval": "train"}),
    metrics=("loss",),
    primary_metric="loss",
    greater_is_better=False,
)

MATH_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        METAMATHQA,
        MathEvalTask(
            name="gsm8k",
            display_name="GSM8K",
            domain="math",
            source="openai/gsm8k",
            subset="main",
            splits=_splits(eval="test"),  # 1,319 problems
            question_column="question",
            answer_column="answer",
            answer_format="solution",
            grading="gsm8k",
            # Room for a full chain of thought: GSM8K solutions are short.
            max_new_tokens=1024,
        ),
        MathEvalTask(
            name="math",
            display_name="MATH",
            domain="math",
            # The 5,000-problem MATH test set; the original hendrycks repo is no longer hosted.
            # The mirror has one configuration per subject; concatenated in this (the
            # mirror's alphabetical) order, 5,000 problems in all.
            source="EleutherAI/hendrycks_math",
            subsets=(
                "algebra",
                "counting_and_probability",
                "geometry",
                "intermediate_algebra",
                "number_theory",
                "prealgebra",
                "precalculus",
            ),
            splits=_splits(eval="test"),
            question_column="problem",
            answer_column="solution",
            answer_format="solution",
            grading="math",
            max_new_tokens=2048,  # MATH's solutions run long
        ),
        MathEvalTask(
            name="math500",
            display_name="MATH-500",
            domain="math",
            # The 500-problem subset of MATH's test set from Lightman et al. (2023), "Let's
            # Verify Step by Step"; its `answer` column is the reference answer itself.
            source="HuggingFaceH4/MATH-500",
            splits=_splits(eval="test"),
            question_column="problem",
            answer_column="answer",
            answer_format="plain",
            grading="math",
            max_new_tokens=2048,
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
        tuple(VISION_TASKS),
        "AutoModelForImageClassification",
        None,
    ),
    "math": DomainSpec(
        "math",
        MappingProxyType(MATH_TASKS),
        ("metamathqa",),
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


def canonical_task_name(domain: str, name: str) -> str:
    """`name`, or the task it is another spelling of (``standfordcars`` -> ``stanfordcars``)."""
    for spec in get_domain(domain).tasks.values():
        if name in getattr(spec, "aliases", ()):
            return spec.name
    return name


def get_task(domain: str, name: str) -> TaskSpec:
    """Metadata of task `name` in `domain`; `ConfigError` with the closest name for a typo."""
    tasks = get_domain(domain).tasks
    try:
        return tasks[canonical_task_name(domain, name)]
    except KeyError:
        raise ConfigError(
            f"task {name!r} is not a {domain} task{did_you_mean(name, tasks)}; "
            f"choices: {', '.join(tasks)}"
        ) from None


# The evaluation sets, in the order ``eval_math.py`` lists them.
EVAL_TASKS: dict[str, MathEvalTask] = {
    name: spec for name, spec in MATH_TASKS.items() if isinstance(spec, MathEvalTask)
}


def eval_task(name: str) -> MathEvalTask:
    """The evaluation set `name`; `ConfigError` naming the closest one for a typo."""
    try:
        return EVAL_TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown dataset {name!r}{did_you_mean(str(name), EVAL_TASKS)} "
            f"(known: {', '.join(EVAL_TASKS)})"
        ) from None

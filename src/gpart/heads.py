"""The task head: which modules of a model are new for the task and train in full.

Every adapter trains the head (a new classifier has no pretrained weights to adapt), and
every place that needs to tell head from backbone asks this module: the adapters that set
``requires_grad`` (bitfit, head), the optimizer's parameter groups (the head has its own
learning rate), the parameter counts (tables report adapter parameters without the head)
and the benchmark. Kept free of torch imports so the configs layer can use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def is_head_param(name: str, head_names: Iterable[str]) -> bool:
    """Whether parameter (or module) `name` lies inside one of the head modules.

    Matched on whole dotted components, so ``classifier`` matches
    ``base_model.model.classifier.modules_to_save.default.dense.weight`` (peft's wrapper)
    but not a module that merely contains the word (``my_classifier``).
    """
    padded = f".{name}."
    return any(f".{h}." in padded for h in head_names)


def head_module_names(model: nn.Module, task_type: Any = "SEQ_CLS") -> list[str]:
    """Names of the model's task-head modules: trained in full by every adapter.

    Derived, not listed per family: a transformers task model is its backbone (the child
    named ``model.base_model_prefix``: ``roberta``, ``bert``, ``vit``) plus new head
    modules, so the head is every other top-level child that has parameters (``classifier``
    for RoBERTa/BERT/ViT, ``score`` for Llama-style classifiers). A causal LM has no new
    head (``lm_head`` is pretrained, often tied to the embeddings), so it returns ``[]``.

    Args:
        model: A transformers task model (not yet wrapped by peft).
        task_type: peft `TaskType` or its name; ``CAUSAL_LM`` has no new head.

    Raises:
        ValueError: `model` has no backbone attribute to tell the head from.
    """
    if str(getattr(task_type, "value", task_type)) == "CAUSAL_LM":
        return []
    prefix = getattr(model, "base_model_prefix", None)
    if not prefix or not hasattr(model, prefix):
        raise ValueError(
            f"{type(model).__name__} has no transformers backbone attribute "
            f"(base_model_prefix); pass head_names explicitly"
        )
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]

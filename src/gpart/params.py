"""Parameter breakdown of an adapted model, and ``--compute_params_only``.

`parameter_breakdown` counts what a run trains and stores; `compute_params_only` builds the
model from its *config* only (no weights, no data) so the counts for any model size are a
few seconds away, offline with a local model directory.
"""

from __future__ import annotations

import copy
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from gpart.configs.errors import ConfigError, first_line
from gpart.heads import is_head_param
from gpart.results.io import write_json_atomic

if TYPE_CHECKING:
    import torch.nn as nn

    from gpart.configs.schema import ExperimentConfig

# peft keeps the frozen original of every `modules_to_save` module next to its trained copy;
# the deployed model has one head, so the original is not counted.
_PEFT_ORIGINAL = ".original_module."


def parameter_breakdown(model: nn.Module, head_names: list[str]) -> dict[str, Any]:
    """Count the parameters of `model` (a peft model or a plain one with requires_grad set).

    Returns a JSON-ready dict:
        total:                 parameters of the model as deployed (base + adapter + head;
                               peft's frozen copy of the head not counted twice)
        trainable:             trainable_adapter + trainable_head
        trainable_adapter:     trainable parameters outside the head modules
        trainable_head:        trainable parameters inside the head modules (`head_names`)
        adapter_storage_bytes: bytes of what the saved adapter holds, head excluded: for a
                               peft model, its saved state dict (so stored buffers such as
                               VeRA's projections count, regenerated ones do not); for gpart
                               that is `d * 4` (fp32 theta); otherwise the trainable
                               non-head parameters
        head_storage_bytes:    bytes of the trained head
        head_modules:          `head_names`
    """
    total = trainable_adapter = trainable_head = 0
    for name, param in model.named_parameters():
        if _PEFT_ORIGINAL in f".{name}.":
            continue
        n = param.numel()
        total += n
        if param.requires_grad:
            if is_head_param(name, head_names):
                trainable_head += n
            else:
                trainable_adapter += n

    adapter_bytes = head_bytes = 0
    for name, tensor in _saved_tensors(model):
        size = tensor.numel() * tensor.element_size()
        if is_head_param(name, head_names):
            head_bytes += size
        else:
            adapter_bytes += size
    return {
        "total": total,
        "trainable": trainable_adapter + trainable_head,
        "trainable_adapter": trainable_adapter,
        "trainable_head": trainable_head,
        "adapter_storage_bytes": adapter_bytes,
        "head_storage_bytes": head_bytes,
        "head_modules": list(head_names),
    }


def _saved_tensors(model: nn.Module):
    """(name, tensor) of what saving the adapter writes."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        from peft.utils import get_peft_model_state_dict

        return list(get_peft_model_state_dict(model).items())
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def build_model_from_config(
    exp: ExperimentConfig,
    task: str,
    *,
    model_config: Any = None,
    device: str = "cpu",
) -> nn.Module:
    """The domain's task model for `task`, randomly initialised from a config (no weights).

    Args:
        exp: the resolved experiment; its domain picks the Auto class (sequence / image
            classification, causal LM) and `task` sets ``num_labels`` / ``problem_type``.
        task: a task of `exp`.
        model_config: a transformers `PretrainedConfig` to use instead of
            ``AutoConfig.from_pretrained(exp.model.base_model)`` (tests, custom models).
        device: ``"meta"`` allocates no memory (shapes only): enough for counting, and the
            way to count a 7B model on a laptop.

    Loading the config reads ``config.json`` from a local directory, or the hub cache /
    hub for an id; a missing or unreadable one is a `ConfigError`.
    """
    import torch
    import transformers

    from gpart.configs.tasks import get_domain, get_task

    exp._check_task(task)
    spec = get_task(exp.domain, task)
    if model_config is None:
        path = exp.model.base_model
        if path is None:
            raise ConfigError("model.base_model: not set; give --base_model or a --model_size")
        try:
            model_config = transformers.AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as exc:
            first = first_line(exc)
            raise ConfigError(
                f"model.base_model: cannot load a config from {path!r} ({first})"
            ) from None
    else:
        model_config = copy.deepcopy(model_config)
    num_labels = getattr(spec, "num_labels", None)
    if num_labels is not None:
        model_config.num_labels = num_labels
        model_config.problem_type = spec.problem_type
    auto = getattr(transformers, get_domain(exp.domain).auto_model)
    with torch.device(device):
        return auto.from_config(model_config)


def compute_params(
    exp: ExperimentConfig, *, model_config: Any = None, device: str = "meta"
) -> dict[str, dict[str, Any]]:
    """`parameter_breakdown` of `exp`'s adapted model, per task of the run.

    Tasks differ only by the head (num_labels), but each is built so every number is exact.
    `device` ``"meta"`` (default) counts from shapes alone: no memory, any model size; the
    tests check it gives the same numbers as ``"cpu"`` for every registered adapter.
    """
    from gpart.configs.bridge import apply_adapter
    from gpart.configs.tasks import get_domain
    from gpart.heads import head_module_names

    task_type = get_domain(exp.domain).peft_task_type
    out = {}
    for task in exp.tasks:
        model = build_model_from_config(exp, task, model_config=model_config, device=device)
        heads = head_module_names(model, task_type or "SEQ_CLS")
        model = apply_adapter(model, exp, head_names=heads)
        out[task] = parameter_breakdown(model, heads)
    return out


def compute_params_only(
    exp: ExperimentConfig,
    *,
    out_path: str | os.PathLike | None = None,
    model_config: Any = None,
    device: str = "meta",
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """``--compute_params_only``: print the breakdown and write it as JSON to `out_path`.

    The JSON holds ``{"adapter", "model", "model_size", "tasks": {task: breakdown}}``;
    it is written atomically (temporary file, then rename) so no half file is left.
    """
    stream = stream or sys.stdout
    result = {
        "adapter": exp.adapter.type,
        "model": exp.model.base_model,
        "model_size": exp.model.model_size,
        "tasks": compute_params(exp, model_config=model_config, device=device),
    }
    for task, b in result["tasks"].items():
        print(
            f"{exp.adapter.type} {task}: total {b['total']:,} | trainable adapter "
            f"{b['trainable_adapter']:,} | trainable head {b['trainable_head']:,} | "
            f"adapter storage {b['adapter_storage_bytes']:,} bytes",
            file=stream,
        )
    if out_path is not None:
        write_json_atomic(out_path, result)
        print(f"wrote {out_path}", file=stream)
    return result

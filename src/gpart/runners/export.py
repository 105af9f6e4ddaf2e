"""``--export_merged DIR``: a finished run as a plain transformers model, for serving.

The adapter is merged into the base weights (peft's ``merge_and_unload``: for GPart each
adapted weight gets its ``theta[group] / sqrt(group size)`` once) and the result is saved
with ``save_pretrained`` beside the run's tokenizer / image processor, so
``AutoModelFor...from_pretrained(DIR)`` loads it with transformers alone: no gpart, no
peft, no adapter files, and no adapter work per token.

A run on a quantized base (``model.quantization``) exports the same way: its 4-bit or
8-bit base weights are dequantized to fp32 first (what the adapter trained against), so
the export holds plain float weights (not re-quantized) that load without bitsandbytes.

The merge happens in fp32 (the base loaded fp32 on the CPU) and only the result is cast to
the export dtype (bf16 by default, what LLMs are served in): merging into bf16 weights would
round every update into the base's bf16 grid, where a small ``theta`` can vanish.

Where it goes: a sweep of one run (one seed, one task) writes DIR itself; a sweep of several
writes one model per run, ``DIR/<task>/seed_<seed>/``, so seeds never overwrite each other.
A target that is a file, or a non-empty directory without ``--force``, is refused before
anything trains. The export reads the run's saved ``adapter/`` (the selected model), so it
works the same right after training and for a finished run that is skipped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gpart.configs import ConfigError, ExperimentConfig
from gpart.runners.common import ADAPTER_DIR, is_peft_model, load_trained
from gpart.runners.quantization import dequantized

if TYPE_CHECKING:
    from torch import nn

EXPORT_DTYPES = ("bf16", "fp16", "fp32")
EXPORT_INFO = "gpart_export.json"  # where the merged weights came from (not an adapter file)


class ModelLoader(Protocol):
    """The one hook of a domain the export needs (`gpart.runners.core.Domain.load_model`).

    A protocol of its own, so that this module, which `core` imports, needs nothing of
    `core`: every `Domain` is a `ModelLoader` by its methods alone.
    """

    def load_model(self, cfg: ExperimentConfig, task: str) -> tuple[Any, nn.Module]: ...


def export_targets(dest: str | Path, runs: list[tuple[str, int]]) -> dict[tuple[str, int], Path]:
    """The directory each ``(task, seed)`` run is exported to (see the module docstring)."""
    root = Path(dest)
    if len(runs) == 1:
        return {runs[0]: root}
    return {(task, seed): root / task / f"seed_{seed}" for task, seed in runs}


def check_export_targets(targets: dict[tuple[str, int], Path], *, force: bool) -> None:
    """Refuse targets that are files, or non-empty directories without `force`.

    Raises:
        ConfigError: naming the first bad target and the fix.
    """
    for path in targets.values():
        for part in (path, *path.parents):
            if part.is_file():
                raise ConfigError(f"--export_merged: {str(part)!r} is a file; give a directory")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise ConfigError(
                f"--export_merged: {str(path)!r} is not empty; give a new directory, remove it, "
                "or pass --force (which also re-runs finished runs)"
            )


def export_merged(
    domain: ModelLoader,
    cfg: ExperimentConfig,
    task: str,
    run: Path,
    dest: Path,
    dtype: str = "bf16",
) -> Path:
    """Merge the trained adapter of `run` into its base model and save it to `dest`.

    Args:
        domain: The run's domain (loads the base model and its processor).
        cfg: The run's config (single-task or sweep; `task` picks the task).
        task: The run's task.
        run: The run directory (its ``adapter/`` is merged).
        dest: The export directory, replaced as a whole (written beside it, then renamed).
        dtype: ``bf16``, ``fp16`` or ``fp32``: the dtype of the saved weights.

    Returns:
        `dest`.
    """
    import torch

    if dtype not in EXPORT_DTYPES:
        raise ConfigError(f"--export_dtype: {dtype!r}; choose from {', '.join(EXPORT_DTYPES)}")
    single = cfg.for_task(task)
    fp32 = replace(single, training=replace(single.training, precision="fp32"))
    processor, base = domain.load_model(fp32, task)
    base = dequantized(base)  # a quantized run's W0: its codes in fp32, merged like any base
    model: Any = load_trained(base, single, run / ADAPTER_DIR)
    if is_peft_model(model):
        model = model.merge_and_unload()
    model = model.to({"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype])
    if getattr(model.config, "use_cache", None) is False:
        model.config.use_cache = True  # turned off for training; generation wants it
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if processor is not None:
        processor.save_pretrained(tmp)
    info = {
        "run_dir": str(run.resolve()),
        "adapter_type": single.adapter.type,
        "base_model": single.model.base_model,
        "dtype": dtype,
    }
    (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)
    return dest

"""Pieces every runner shares: model loading, saving and reloading what was trained,
provenance, and the callback that writes ``metrics.jsonl``.

Kept free of any one domain, so the vision and math runners reuse it unchanged.
"""

from __future__ import annotations

import copy
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from gpart.configs import ConfigError, ExperimentConfig
from gpart.configs.errors import first_line
from gpart.results import append_jsonl

ADAPTER_DIR = "adapter"  # the selected model's trained weights (best or last)
CHECKPOINT_DIR = "checkpoints"  # Trainer checkpoints (resume, and the last model)
TRAINABLE_FILE = "trainable.safetensors"  # non-peft adapters: the trained tensors only


# ------------------------------------------------------------------------ provenance
def provenance() -> dict[str, Any]:
    """Library versions and the git commit, stored next to every run's config."""
    import accelerate
    import datasets
    import peft
    import transformers

    import gpart

    info: dict[str, Any] = {
        "gpart": gpart.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    try:
        root = Path(__file__).resolve().parents[3]
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        info["git_sha"] = sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["git_sha"] = None
    return info


# ------------------------------------------------------------------------ precision
def mixed_precision(precision: str) -> dict[str, bool]:
    """`TrainingArguments`' ``bf16`` / ``fp16`` for ``training.precision`` on this machine."""
    if precision == "auto":
        precision = "fp16" if torch.cuda.is_available() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a run of ``training.precision`` computes in on this machine."""
    amp = mixed_precision(precision)
    return torch.bfloat16 if amp["bf16"] else torch.float16 if amp["fp16"] else torch.float32


# ------------------------------------------------------------------------ models
def load_pretrained(cfg: ExperimentConfig, auto_class: Any, what: str, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(--base_model)`; a missing or unreadable one is a
    `ConfigError` naming `what` (a model, a tokenizer, an image processor) and the cause."""
    path = cfg.model.base_model
    if not path:
        raise ConfigError("model.base_model: not set; give --base_model (hub id or directory)")
    try:
        return auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"--base_model: cannot load {what} from {path!r} ({first_line(exc)})"
        ) from None


def load_base_model(cfg: ExperimentConfig, task: str, auto_class: Any, **kwargs: Any) -> nn.Module:
    """The pretrained model (hub id or local directory) with the task's head size.

    fp32 unless the caller passes ``dtype``: transformers 5 otherwise loads a checkpoint in
    the dtype it was saved in (``dtype="auto"``), so a bf16 checkpoint (Qwen2.5, Llama-3.1,
    ...) would train full fine-tuning's weights, or sit beside GPart's fp32 theta under
    FSDP, in bf16 without anyone asking for it.

    With ``model.quantization`` the linear layers load in bitsandbytes' 4-bit or 8-bit
    storage instead (`gpart.runners.quantization`); ``dtype`` then applies to the rest.
    """
    kwargs.setdefault("dtype", torch.float32)
    if cfg.model.quantization != "none":
        from gpart.runners.quantization import quantization_config

        dtype = compute_dtype(cfg.training.precision)
        kwargs["quantization_config"] = quantization_config(cfg, auto_class, dtype)
    return load_pretrained(cfg, auto_class, "a model", **kwargs)


def is_peft_model(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_trained(
    model: nn.Module, out_dir: Path, state_dict: dict[str, torch.Tensor] | None = None
) -> None:
    """Save exactly what was trained: a peft adapter, or the trainable tensors.

    peft adapters go through `save_pretrained` (adapter_config.json + safetensors; for GPart
    `theta` and the head). bitfit / head / full save their `requires_grad` tensors, which
    on top of the base model reproduce the trained model.

    `state_dict` is the full state dict when the model's own tensors are not whole (FSDP
    shards them: `save_trained_from` gathers it first); by default the model's tensors.
    """
    from safetensors.torch import save_file

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if is_peft_model(model):
        model.save_pretrained(tmp, state_dict=state_dict)
    else:
        tmp.mkdir(parents=True)
        trained = [(_unwrapped_name(n), p) for n, p in model.named_parameters() if p.requires_grad]
        tensors = {
            n: (p if state_dict is None else state_dict[n]).detach().contiguous().cpu()
            for n, p in trained
        }
        save_file(tensors, str(tmp / TRAINABLE_FILE))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def _unwrapped_name(name: str) -> str:
    """A parameter name without FSDP's wrapper prefixes (the state dict's name)."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def save_trained_from(trainer: Any, out_dir: Path, *, is_main: bool) -> None:
    """`save_trained` of a `Trainer`'s model, in every process of a distributed run.

    Under DDP the model holds whole tensors: the main process saves them. Under FSDP each
    process holds a shard, so every process takes part in gathering the full state dict
    (accelerate's `get_state_dict`, a collective that leaves it on the main process) and
    the main process saves what was trained from it.
    """
    model, state = trainer.model, None
    if getattr(trainer, "is_fsdp_enabled", False):
        state = trainer.accelerator.get_state_dict(trainer.model)
        model = trainer.accelerator.unwrap_model(trainer.model)
    if is_main:
        save_trained(model, out_dir, state_dict=state)


def fsdp_launched() -> bool:
    """Whether ``accelerate launch`` started this process with FSDP (its config sets
    ``ACCELERATE_USE_FSDP``); the model is then loaded whole in fp32 and FSDP shards it."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def fsdp_device_available() -> bool:
    """Whether this machine has an accelerator that accelerate's FSDP can shard over
    (CUDA, XPU, HPU, ...; not the CPU, and not Apple's MPS, which accelerate's FSDP plugin
    does not list)."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is None:  # torch < 2.6: CUDA is the one that matters here
        return torch.cuda.is_available()
    # `current_accelerator()` names the build's backend (CUDA wheels: cuda) even with no
    # device present; `is_available()` asks whether one is there.
    current = accelerator.current_accelerator()
    return accelerator.is_available() and current is not None and current.type != "mps"


def load_trained(
    base: nn.Module, cfg: ExperimentConfig, weights_dir: Path, *, trainable: bool = False
) -> nn.Module:
    """Rebuild a trained model from the base model and a saved adapter or checkpoint dir.

    `weights_dir` may be a run's `adapter/` folder or a Trainer checkpoint: peft adapters
    load with `PeftModel.from_pretrained`; otherwise the saved tensors (ours, or a
    checkpoint's full `model.safetensors`) are loaded by name onto the base model.

    With `trainable`, ``requires_grad`` marks what was trained, as in training: peft's own
    ``is_trainable`` (the adapter and its ``modules_to_save``), or exactly the saved
    tensors (for a checkpoint's `model.safetensors`, every parameter). Without it the
    flags are left as loading leaves them (frozen for peft adapters).
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    weights_dir = Path(weights_dir)
    if (weights_dir / "adapter_config.json").exists():
        return PeftModel.from_pretrained(base, weights_dir, is_trainable=trainable)
    for name in (TRAINABLE_FILE, "model.safetensors"):
        if (weights_dir / name).exists():
            state = load_file(str(weights_dir / name))
            missing_from_model = set(state) - set(base.state_dict())
            if missing_from_model:
                raise ValueError(
                    f"{weights_dir / name}: {len(missing_from_model)} tensors do not belong to "
                    f"{type(base).__name__} (e.g. {sorted(missing_from_model)[:3]})"
                )
            base.load_state_dict(state, strict=False)
            if trainable:
                for pname, param in base.named_parameters():
                    param.requires_grad_(pname in state)
            return base
    raise FileNotFoundError(
        f"{weights_dir}: no adapter_config.json, {TRAINABLE_FILE} or model.safetensors"
    )


# ------------------------------------------------------------------------ metrics.jsonl
class MetricsJsonlCallback(TrainerCallback):
    """Append every evaluation (and the final test evaluation) to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        if metrics and state.is_world_process_zero:
            record = {"step": state.global_step, "epoch": state.epoch, **copy.deepcopy(metrics)}
            append_jsonl(self.path, record)

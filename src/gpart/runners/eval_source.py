"""What ``eval_math.py`` evaluates, and that model loaded for generation.

`resolve_source`: ``--adapter_path`` is a run directory of ``finetune_metamath.py`` (its
``config.json`` gives the base model, the prompt template and the system prompt; the
weights are its ``adapter/``), the ``adapter/`` folder of one, or any peft / GPart adapter
folder (the base model from its ``adapter_config.json`` unless ``--base_model``);
``--base_model`` alone evaluates a base model. `load_for_generation` loads it with the
adapter merged, left padding and a pad token, on the device `pick_device` chose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpart.configs import ConfigError, ExperimentConfig, experiment_from_dict
from gpart.configs.errors import first_line
from gpart.results import read_json
from gpart.runners.common import ADAPTER_DIR, TRAINABLE_FILE, load_trained


@dataclass
class Source:
    """What to evaluate: the base model, the trained weights (None: the base model alone),
    the run's config (None: not a run), and where ``eval/`` goes."""

    base_model: str
    weights: Path | None
    cfg: ExperimentConfig | None
    out_root: Path

    @property
    def template(self) -> str | None:
        return self.cfg.data.prompt_template if self.cfg else None

    @property
    def system_prompt(self) -> str | None:
        return self.cfg.data.system_prompt if self.cfg else None


def _is_weights_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() or (path / TRAINABLE_FILE).is_file()


def resolve_source(
    adapter_path: str | None, base_model: str | None, output_dir: str | None
) -> Source:
    """The model, weights, config and output root that the settings name (module docstring).

    Raises:
        ConfigError: neither flag, a path that is no run or adapter, an unfinished run, a
            base model that cannot be told, or no output directory for a base model.
    """
    out = Path(output_dir) if output_dir else None
    if adapter_path is None:
        if base_model is None:
            raise ConfigError("give --adapter_path RUN_OR_ADAPTER_DIR or --base_model MODEL")
        if out is None:
            raise ConfigError("--base_model alone: give --output_dir (eval/<dataset>/ goes there)")
        return Source(base_model, None, None, out)
    path = Path(adapter_path)
    if not path.is_dir():
        raise ConfigError(f"--adapter_path {adapter_path}: no such directory")
    run = path if (path / "config.json").is_file() else None
    if run is None and _is_weights_dir(path) and (path.parent / "config.json").is_file():
        run = path.parent  # the adapter/ folder of a run
    if run is not None:
        try:
            cfg = experiment_from_dict(read_json(run / "config.json")["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{run / 'config.json'}: not a run's config ({first_line(exc)})"
            ) from None
        if cfg.domain != "math":
            raise ConfigError(f"--adapter_path {adapter_path}: a {cfg.domain} run, not a math one")
        weights = path if run != path else run / ADAPTER_DIR
        if not weights.is_dir():
            raise ConfigError(f"{run}: no {ADAPTER_DIR}/ (the run did not finish)")
        base = base_model or cfg.model.base_model
        if not base:
            raise ConfigError(f"{run}: the config names no base model; give --base_model")
        return Source(base, weights, cfg, out or run)
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(
            f"--adapter_path {adapter_path}: neither a run directory (config.json) nor an "
            "adapter folder (adapter_config.json)"
        )
    base = base_model or json.loads((path / "adapter_config.json").read_text()).get(
        "base_model_name_or_path"
    )
    if not base:
        raise ConfigError(f"{path}/adapter_config.json names no base model; give --base_model")
    return Source(base, path, None, out or path)


def pick_device(name: str | None) -> Any:
    """`name` as a torch device, or accelerate's device for this process (None).

    Raises:
        ConfigError: a name under ``accelerate launch``, a bad name, CUDA where there is none.
    """
    import torch

    from gpart.evaluation.generate import process_state

    state = process_state()
    if name is None:
        return state.device
    if state.num_processes > 1:
        raise ConfigError("device: accelerate launch places each process; leave it out")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r}: {first_line(exc)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name}: no CUDA device here; use the override `device cpu`")
    return device


def load_for_generation(
    source: Source, device: Any, *, bf16: bool | None = None, merge: bool = True
) -> tuple[Any, Any, str]:
    """The tokenizer (left padding, pad = EOS if it has none) and the model with its
    adapter merged (unless not `merge`: `gpart.bench.generation` compares), in eval mode on
    `device`: bf16 on CUDA, fp32 elsewhere (`bf16` decides instead when given).

    Returns:
        ``(tokenizer, model, dtype name)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpart.evaluation.generate import merge_adapter
    from gpart.runners.math import set_pad_token

    if bf16 is None:
        bf16 = device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    quantized = source.cfg is not None and source.cfg.model.quantization != "none"
    if quantized and source.weights is not None:
        # Trained on a quantized base: W0 is its dequantized codes, not the float
        # checkpoint's weights; loaded as in training, dequantized below, then merged.
        from gpart.runners.quantization import quantization_config

        kwargs = {
            "quantization_config": quantization_config(source.cfg, AutoModelForCausalLM, dtype)
        }
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.base_model)
        model = AutoModelForCausalLM.from_pretrained(source.base_model, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot load the base model {source.base_model!r} ({first_line(exc)}); "
            "give --base_model"
        ) from None
    # generate feeds pad ids to the model (left padding, finished rows): one with no
    # embedding row is replaced by EOS
    set_pad_token(tokenizer, model.get_input_embeddings().num_embeddings)
    tokenizer.padding_side = "left"
    model.config.pad_token_id = tokenizer.pad_token_id
    if source.weights is not None:
        if quantized:
            from gpart.runners.quantization import dequantized

            model = dequantized(model)  # fp32: merged in fp32, then cast (as the export)
        model = load_trained(model, source.cfg, source.weights)
        model = (merge_adapter(model) if merge else model).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model.to(device).eval(), str(dtype).removeprefix("torch.")


__all__ = ["Source", "load_for_generation", "pick_device", "resolve_source"]

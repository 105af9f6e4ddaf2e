"""Experiment configuration: dataclass schema, adapter registry, presets, layered resolution
and the command-line override parser shared by the GLUE, vision and math runners.

Runner entry points:
    parse_cli(argv, domain=...)           -> (ExperimentConfig, flags)
    exit_on_config_error()                ConfigError -> "error: ..." on stderr, exit 2
    resolve_experiment(...)               the same resolution from Python
    experiment_from_dict(data)            rebuild a config saved with ExperimentConfig.to_dict
    apply_adapter(model, cfg)             peft model / requires_grad for any adapter
"""

from gpart.configs.bridge import apply_adapter, head_module_names, to_peft_config
from gpart.configs.cli import build_parser, exit_on_config_error, parse_cli
from gpart.configs.errors import ConfigError
from gpart.configs.load import experiment_from_dict
from gpart.configs.registry import AdapterSpec, adapter_names, get_adapter, register_adapter
from gpart.configs.resolve import resolve_experiment, valid_keys
from gpart.configs.schema import (
    AdapterConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TaskConfig,
    TrainingConfig,
)
from gpart.configs.tasks import DOMAINS, get_domain, get_task

__all__ = [
    "DOMAINS",
    "AdapterConfig",
    "AdapterSpec",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TaskConfig",
    "TrainingConfig",
    "adapter_names",
    "apply_adapter",
    "build_parser",
    "exit_on_config_error",
    "experiment_from_dict",
    "get_adapter",
    "get_domain",
    "get_task",
    "head_module_names",
    "parse_cli",
    "register_adapter",
    "resolve_experiment",
    "to_peft_config",
    "valid_keys",
]

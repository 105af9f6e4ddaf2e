"""The shipped accelerate launch configs load with accelerate's own parser."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_loads(path):
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= 1 and cfg.mixed_precision == "no"


def test_both_launch_modes_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"single_gpu", "ddp"}

"""GPart as a peft method: config, layers, tuner model, partition hash and autograd ops.

Importing this package registers GPart with peft (`register`, idempotent), the way peft
registers each of its own methods in the method package's ``__init__``: the modules below
only define things (`peft_type` adds the `PeftType.GPART` member, `config` and `model`
build on it), and the registration, which needs both `GPartConfig` and `GPartModel`, runs
here once they exist. So no module of the tuner imports another one that imports it back.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import register_peft_method

from gpart.tuner.config import GPartConfig
from gpart.tuner.layer import GPartLayer
from gpart.tuner.model import GPartModel
from gpart.tuner.peft_type import GPART_NAME, GPART_PEFT_TYPE


def register() -> None:
    """Register GPart's config and tuner with peft's mappings (idempotent)."""
    if PEFT_TYPE_TO_CONFIG_MAPPING.get(GPART_PEFT_TYPE) is GPartConfig:
        return
    register_peft_method(name=GPART_NAME, config_cls=GPartConfig, model_cls=GPartModel)


register()

__all__ = ["GPART_PEFT_TYPE", "GPartConfig", "GPartLayer", "GPartModel", "register"]

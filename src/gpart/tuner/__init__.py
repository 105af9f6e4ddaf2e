"""GPart as a peft method: config, layers, tuner model, partition hash and autograd ops."""

from gpart.tuner.config import GPartConfig
from gpart.tuner.layer import GPartLayer
from gpart.tuner.model import GPartModel
from gpart.tuner.registration import GPART_PEFT_TYPE, register

__all__ = ["GPART_PEFT_TYPE", "GPartConfig", "GPartLayer", "GPartModel", "register"]

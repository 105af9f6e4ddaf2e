"""GPart: parameter-efficient fine-tuning with one vector `theta` for the whole model.

`import gpart` registers the method with the installed peft, so `get_peft_model`,
`PeftModel.from_pretrained` etc. accept a `GPartConfig` and load saved GPart adapters.
"""

from gpart.tuner import GPartConfig, GPartModel, register

register()

__all__ = ["GPartConfig", "GPartModel"]
__version__ = "0.1.0"

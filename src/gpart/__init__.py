"""GPart: parameter-efficient fine-tuning with one vector `theta` for the whole model.

`import gpart` registers the method with the installed peft, so `get_peft_model`,
`PeftModel.from_pretrained` etc. accept a `GPartConfig`.
"""

from gpart.tuner.config import GPartConfig

__all__ = ["GPartConfig"]
__version__ = "0.1.0"

"""GPart: parameter-efficient fine-tuning with one vector `theta` for the whole model.

`import gpart` registers the method with the installed peft, so `get_peft_model`,
`PeftModel.from_pretrained` etc. accept a `GPartConfig` and load saved GPart adapters.

Why lazily: two promises meet in this file. `import gpart` registers GPart with peft, and
parts of the package are light on purpose (`gpart.results` collects result tables without
torch or transformers). Every ``import gpart.<anything>`` runs this file first, so it must
not import torch, transformers or peft itself. Both hold because registration only matters
once peft is loaded: nothing can build or load a GPart adapter without importing peft
first. So the registration is tied to peft's import:

* `GPartConfig`, `GPartModel` and `register` are looked up on first use (PEP 562 module
  ``__getattr__``), which imports `gpart.tuner`; importing `gpart.tuner` registers GPart
  with peft (idempotent).
* If peft is already imported when `gpart` is, `gpart.tuner` is imported right away.
* Otherwise a small finder is put at the front of `sys.meta_path`. It only answers for the
  top-level ``peft`` module: it lets the other finders find it and wraps the loader, so
  that right after peft's ``__init__`` has finished executing `gpart.tuner` is imported
  (and registers). The finder then takes itself off `sys.meta_path` and gives peft back its
  own loader; nothing of it is left once peft is loaded.

``import gpart`` and ``import peft``, in either order, therefore leave GPart registered,
while ``import gpart.results`` costs milliseconds. Should the registration fail (an
incompatible peft), importing peft still succeeds with a warning, and ``from gpart import
GPartConfig`` raises the actual error.

It also drops one import-time notice of bitsandbytes (see `BNB_KERNELS_NOTICE`) with a
logging filter, which imports nothing.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpart.tuner import GPartConfig, GPartModel, register  # noqa: F401

__all__ = ["GPartConfig", "GPartModel"]
__version__ = "0.1.0"

# Names this module lends from `gpart.tuner` on first use (plus the subpackage itself).
_FROM_TUNER = ("GPartConfig", "GPartModel", "register")


def __getattr__(name: str) -> Any:
    if name in _FROM_TUNER or name == "tuner":
        import gpart.tuner  # noqa: F401  (registers GPart with peft)

        tuner = sys.modules["gpart.tuner"]
        if name == "tuner":
            return tuner
        value = getattr(tuner, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_TUNER, "tuner"})


def _register_with_peft() -> None:
    """Import `gpart.tuner`, whose ``__init__`` registers GPart with peft (idempotent).

    Called once peft has finished loading. If `gpart.tuner` is itself being imported (it
    imports peft), the import returns at once and the tuner registers when it finishes.
    """
    try:
        import gpart.tuner  # noqa: F401
    except Exception as err:  # a broken GPart must not break `import peft` for others
        import warnings

        warnings.warn(
            f"GPart could not register with peft ({type(err).__name__}: {err}); "
            "`from gpart import GPartConfig` shows the full error.",
            RuntimeWarning,
            stacklevel=2,
        )


class _PeftLoaderHook:
    """`sys.meta_path` finder: register GPart right after the top-level ``peft`` loads."""

    is_gpart_peft_hook = True

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "peft":
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        # `importlib.util.find_spec("peft")` (transformers asks it to see whether peft is
        # installed) gets this spec too; nothing happens until it is actually executed.
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec

    @staticmethod
    def uninstall() -> None:
        sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "is_gpart_peft_hook", 0)]


class _RegisteringLoader:
    """Runs peft's own loader, then hands peft its loader back and registers GPart."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)  # if peft fails to import, the hook stays
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        _PeftLoaderHook.uninstall()
        _register_with_peft()

    def __getattr__(self, name: str) -> Any:  # is_package, get_resource_reader, ...
        return getattr(self.loader, name)


# bitsandbytes logs this notice when it is imported on a CPU with AVX512-BF16 and the
# optional `kernels` package (a faster CPU 4-bit matmul) is absent. peft imports
# bitsandbytes whenever it is installed (the dev group installs it), so every command would
# open with it, 4-bit or not. Only this record is dropped, matched by its logger, level and
# format string: the logger's other records, and every other bitsandbytes logger, errors
# included, still reach the handlers. docs/compatibility.md names `kernels` for 4-bit CPU use.
BNB_KERNELS_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropBnbKernelsNotice(logging.Filter):
    is_gpart_bnb_filter = True

    def filter(self, record: logging.LogRecord) -> bool:
        notice = record.levelno == logging.WARNING and str(record.msg).startswith(
            BNB_KERNELS_NOTICE
        )
        return not notice


def _quiet_bnb_kernels_notice() -> None:
    logger = logging.getLogger(BNB_KERNELS_LOGGER)
    if not any(getattr(f, "is_gpart_bnb_filter", 0) for f in logger.filters):
        logger.addFilter(_DropBnbKernelsNotice())


def _install() -> None:
    _quiet_bnb_kernels_notice()  # before peft, which imports bitsandbytes
    peft = sys.modules.get("peft")
    if peft is not None and not getattr(getattr(peft, "__spec__", None), "_initializing", 0):
        _register_with_peft()
    elif not any(getattr(f, "is_gpart_peft_hook", 0) for f in sys.meta_path):
        sys.meta_path.insert(0, _PeftLoaderHook())


_install()

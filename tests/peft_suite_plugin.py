"""pytest plugin: run peft's own ``tests/test_custom_models.py`` on GPart.

Loaded with ``-p peft_suite_plugin`` inside a pytest run over the extracted sdist of the
installed peft (see `tests/test_peft_suite.py`, which fetches it). Nothing of peft's code is
copied or edited: once pytest has imported peft's module, and before it generates any test
from it, the plugin replaces the contents of peft's case lists by GPart cases declared the
way peft declares UniLoRA's and VeRA's, deselects every test that does not run a GPart case,
and skips, with the reason beside each, the few that do not apply to GPart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpart import GPartConfig

# peft's default test models (test_custom_models.py): "MLP" has lin0 (10->20) and lin1
# (20->2) and a bias on both; "EmbConv1D" an Embedding(100, 5) and a Conv1D(1, 5); "Conv2d"
# a Conv2d(5, 10, 3); "Conv2d1x1" a 1x1 conv; "Conv2dGroups" a grouped conv.
GPART_CASES = [
    ("Vanilla MLP 1 GPart", "MLP", GPartConfig, {"target_modules": "lin0", "d": 32}),
    ("Vanilla MLP 2 GPart", "MLP", GPartConfig, {"target_modules": ["lin0"], "d": 16}),
    ("Vanilla MLP 3 GPart", "MLP", GPartConfig, {"target_modules": ["lin1"], "d": 4}),
    ("Vanilla MLP 4 GPart", "MLP", GPartConfig, {"target_modules": ["lin0", "lin1"], "d": 32}),
    (
        "Vanilla MLP 5 GPart",
        "MLP",
        GPartConfig,
        {"target_modules": ["lin0"], "modules_to_save": ["lin1"], "d": 16},
    ),
    (
        "Vanilla MLP 6 GPart bias",
        "MLP",
        GPartConfig,
        {"target_modules": ["lin0", "lin1"], "bias": "gpart_only", "d": 32},
    ),
    (
        "Vanilla MLP 7 GPart balanced",
        "MLP",
        GPartConfig,
        {"target_modules": ["lin0"], "grouping_strategy": "balanced", "d": 16},
    ),
    (
        "Embedding + transformers Conv1D 1 GPart",
        "EmbConv1D",
        GPartConfig,
        {"target_modules": ["conv1d"], "d": 4},
    ),
    (
        "Embedding + transformers Conv1D 2 GPart",
        "EmbConv1D",
        GPartConfig,
        {"target_modules": ["emb", "conv1d"], "d": 32},
    ),
    ("Conv2d 1 GPart", "Conv2d", GPartConfig, {"target_modules": ["conv2d"], "d": 32}),
    ("Conv2d 1x1 GPart", "Conv2d1x1", GPartConfig, {"target_modules": ["conv2d"], "d": 8}),
    ("Conv2d groups GPart", "Conv2dGroups", GPartConfig, {"target_modules": ["conv2d"], "d": 16}),
]

# (name, tuner method, config class, first adapter's kwargs, second's), as peft declares them.
GPART_MULTI_CASES = [
    (
        "GPart Same",
        "gpart",
        GPartConfig,
        {"target_modules": ["lin0"], "d": 16, "init_bound": 0.1},
        {"target_modules": ["lin0"], "d": 16, "init_bound": 0.1, "proj_seed": 7},
    ),
    (
        "GPart Different",
        "gpart",
        GPartConfig,
        {"target_modules": ["lin0"], "d": 16, "init_bound": 0.1},
        {"target_modules": ["lin1"], "d": 4, "init_bound": 0.1},
    ),
]


@dataclass
class GPartConfigD16(GPartConfig):
    """GPartConfig with ``d=16`` by default, for peft's tests parametrized by config class
    alone: they build ``config_cls(target_modules=[...])`` and GPart has no default ``d``.
    Nothing else differs; saved adapters are plain GPart adapters."""

    d: int | None = 16


def _set_init_weights_false(original):
    """peft's ``set_init_weights_false`` for GPart: a nonzero ``init_bound`` (theta ~ U(-b, b))
    makes the adapter change the model, as ``init_weights=False`` does for other methods."""

    def wrapped(config_cls, kwargs):
        if isinstance(config_cls, type) and issubclass(config_cls, GPartConfig):
            return {**kwargs, "init_bound": 0.1}
        return original(config_cls, kwargs)

    return wrapped


_PATCHED: set[str] = set()


def _patch(module) -> None:
    module.TEST_CASES[:] = GPART_CASES
    module.MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES[:] = GPART_MULTI_CASES
    module.ALL_PEFT_CONFIG_CLASSES[:] = [GPartConfigD16]
    import importlib

    common = importlib.import_module(module.__package__ + ".testing_common")
    for mod in (module, common):
        if hasattr(mod, "set_init_weights_false"):
            mod.set_init_weights_false = _set_init_weights_false(mod.set_init_weights_false)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    # The first item of peft's module: it is imported, no test of it is generated yet (the
    # parametrize marks hold the very list objects patched here).
    module = getattr(collector, "module", None)
    if module is None or not module.__name__.endswith("test_custom_models"):
        return None
    if module.__name__ not in _PATCHED:
        _PATCHED.add(module.__name__)
        _patch(module)
    return None


def _is_gpart(value) -> bool:
    if isinstance(value, type) and issubclass(value, GPartConfig):
        return True
    return isinstance(value, str) and "gpart" in value.lower()


# Tests of peft's suite that do not apply to GPart; the reason is what a peft reviewer reads.
SKIPS = {
    "test_save_load_roundtrip_fsdp_wrapped_learnable_bias": (
        "fills the raw biases of the model (for bias_peft_method_only those of the adapted "
        "layers) with 1.23 and expects the adapter to save them. GPart never trains the raw "
        "bias of an adapted layer: with bias='gpart_only' or 'all' its update is part of "
        "theta (saved), the raw bias stays the frozen base weight, as LoRA's base weight "
        "does; bias='all' saves the other biases, which tests/test_peft_integration.py "
        "checks under FSDP."
    ),
}


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (keep if any(_is_gpart(v) for v in params.values()) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    for item in keep:
        reason = SKIPS.get(item.originalname)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"GPart: {reason}"))

"""Adapter arithmetic: combining GPart adapters by combining their `theta`.

Adapters whose configs define the same partition `P` of the same adapted weights have
updates `dW_i = P theta_i`, linear in theta, so `sum_i w_i theta_i` *is* the adapter whose
update is `sum_i w_i dW_i`: exact, with no SVD and no growth of `d`. The pruning
combinations (TIES, DARE, magnitude pruning) are peft's own `peft.utils.merge_utils`
functions applied to the thetas, as peft's LoRA applies them to its factors.

`GPartModel.add_weighted_adapter` (peft's name and signature) uses what is here: the
argument checks, `partition_mismatch` (why two adapters do not share a partition, naming
the field) and `combine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from peft.utils import ModulesToSaveWrapper
from peft.utils.merge_utils import dare_linear, dare_ties, magnitude_prune, task_arithmetic, ties

from gpart.tuner.config import GPartConfig
from gpart.tuner.layer import GPartLayer, GPartShared

# combination_type -> (peft's merge function, uses density, uses majority_sign_method)
COMBINATIONS = {
    "linear": (task_arithmetic, False, False),
    "ties": (ties, True, True),
    "dare_linear": (dare_linear, True, False),
    "dare_ties": (dare_ties, True, True),
    "magnitude_prune": (magnitude_prune, True, False),
}
SIGN_METHODS = ("total", "frequency")
# Fields that decide the partition and the scales but not which modules are adapted; compared
# as values. `bias` decides whether the adapted layers' biases are part of the space.
PARTITION_FIELDS = (
    "d",
    "proj_seed",
    "projection_type",
    "grouping_strategy",
    "assignment_backend",
    "partition_scope",
    "scheme_version",
    "isometric",
    "bias",
)
# Fields that select the adapted modules (and, with partition_scope="transformer_block",
# their blocks); compared by their effect, since one selection has many spellings.
SELECTION_FIELDS = ("target_modules", "exclude_modules", "layers_to_transform", "layers_pattern")
_WHERE = "GPart add_weighted_adapter"


def check_arguments(
    combination_type: str,
    density: float | None,
    majority_sign_method: str,
    svd_options: dict[str, object],
) -> None:
    """Refuse, in one line each, what has no meaning for a combination of theta vectors."""
    if combination_type == "cat":
        raise ValueError(
            f"{_WHERE}: combination_type='cat' concatenates LoRA factors into a larger rank; a "
            "GPart adapter has no rank (every adapter is one theta of length d on a shared "
            "partition), and combination_type='linear' already gives the weighted sum of the "
            "weight updates exactly."
        )
    if combination_type.endswith("svd"):
        exact = combination_type.removesuffix("_svd") if combination_type != "svd" else "linear"
        raise ValueError(
            f"{_WHERE}: combination_type={combination_type!r} refactors a combined weight update "
            "into low-rank LoRA factors by SVD; a GPart update dW = P theta is linear in theta, "
            f"so combining thetas is exact without SVD: use combination_type={exact!r}."
        )
    if combination_type not in COMBINATIONS:
        raise ValueError(
            f"{_WHERE}: unknown combination_type {combination_type!r}; GPart combines thetas by "
            f"{', '.join(COMBINATIONS)}."
        )
    set_svd = [name for name, (value, default) in svd_options.items() if value != default]
    if set_svd:
        raise ValueError(
            f"{_WHERE}: {', '.join(set_svd)} set, but those options belong to LoRA's SVD "
            "combinations; a GPart combination of thetas is exact and uses no SVD: leave them out."
        )
    _, uses_density, uses_sign = COMBINATIONS[combination_type]
    if uses_density:
        if isinstance(density, bool) or not isinstance(density, (int, float)):
            raise ValueError(
                f"{_WHERE}: combination_type={combination_type!r} needs density, the fraction "
                f"of theta's entries each adapter keeps, in (0, 1]; got {density!r}."
            )
        if not 0.0 < density <= 1.0:
            raise ValueError(
                f"{_WHERE}: density must be in (0, 1] (the fraction of theta's entries each "
                f"adapter keeps; DARE rescales by 1/density); got {density!r}."
            )
    elif density is not None:
        raise ValueError(
            f"{_WHERE}: density={density!r} prunes, but combination_type={combination_type!r} "
            "keeps every entry; use ties, dare_linear, dare_ties or magnitude_prune to prune."
        )
    if majority_sign_method not in SIGN_METHODS:
        raise ValueError(
            f"{_WHERE}: majority_sign_method must be one of {', '.join(SIGN_METHODS)}; got "
            f"{majority_sign_method!r}."
        )
    if not uses_sign and majority_sign_method != "total":
        raise ValueError(
            f"{_WHERE}: majority_sign_method={majority_sign_method!r} elects signs, which only "
            f"ties and dare_ties do, not combination_type={combination_type!r}."
        )


def check_sources(
    model: torch.nn.Module,
    shared: GPartShared,
    configs: dict[str, GPartConfig],
    adapters: list[str],
    weights: list[float],
    adapter_name: str,
) -> dict[str, str]:
    """Refuse, in one line each, sources that cannot be combined into `adapter_name`.

    Returns:
        Each module wrapped by modules_to_save that one of `adapters` trains -> that
        adapter, whose trained copy the combination takes.
    """
    if not adapters:
        raise ValueError(f"{_WHERE}: adapters is empty; name at least one adapter to combine.")
    unknown = [a for a in adapters if a not in configs]
    if unknown:
        raise ValueError(
            f"{_WHERE}: adapter {unknown[0]!r} does not exist; this model's adapters: "
            f"{', '.join(map(repr, configs))}."
        )
    if len(weights) != len(adapters):
        raise ValueError(
            f"{_WHERE}: {len(weights)} weights for {len(adapters)} adapters; give one weight "
            "per adapter."
        )
    if adapter_name in configs:
        raise ValueError(
            f"{_WHERE}: adapter {adapter_name!r} already exists; choose another name or "
            f"delete_adapter({adapter_name!r}) first."
        )
    direct = [a for a in adapters if configs[a].bias == "all"]
    if direct:
        raise ValueError(
            f"{_WHERE}: adapter {direct[0]!r} has bias='all', which trains the model's raw "
            "biases in place, outside theta, so they cannot be weighted; combine adapters "
            "trained with bias='gpart_only' (the biases' update in theta) or 'none'."
        )
    for other in adapters[1:]:
        reason = partition_mismatch(model, shared, configs, adapters[0], other)
        if reason:
            raise ValueError(reason)
    owners = {}
    for name, module in model.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            trained = [a for a in dict.fromkeys(adapters) if a in module.modules_to_save]
            if len(trained) > 1:
                # peft's LoRA refuses this too.
                raise ValueError(
                    f"{_WHERE}: adapters {trained} each train their own copy of {name!r} "
                    "(modules_to_save); a trained module is no update that can be weighted, "
                    "so combine adapters of which at most one trains it."
                )
            if trained:
                owners[name] = trained[0]
    return owners


def combine(
    thetas: Sequence[torch.Tensor],
    weights: Sequence[float],
    combination_type: str,
    density: float | None,
    majority_sign_method: str,
) -> torch.Tensor:
    """The combined theta, by peft's merge function for `combination_type`, computed in fp32
    (or the thetas' wider dtype). The DARE types draw their masks with `torch.bernoulli` from
    torch's global RNG, one adapter after the other in the order given (peft's code), so
    `torch.manual_seed` before the call reproduces them."""
    dtype = torch.float32
    for theta in thetas:
        dtype = torch.promote_types(dtype, theta.dtype)
    tensors = [theta.detach().to(dtype) for theta in thetas]
    w = torch.tensor([float(x) for x in weights], dtype=dtype, device=tensors[0].device)
    merge, uses_density, uses_sign = COMBINATIONS[combination_type]
    args = ([density] if uses_density else []) + ([majority_sign_method] if uses_sign else [])
    return merge(tensors, w, *args)


def partition_mismatch(
    model: torch.nn.Module,
    shared: GPartShared,
    configs: dict[str, GPartConfig],
    a: str,
    b: str,
) -> str | None:
    """Why adapters `a` and `b` do not index one partition of one adapted space (a one-line
    message naming the field), or None when `P_a == P_b`: the same fields, the same adapted
    modules at the same offsets, equal partitions and scales, and equal stored group ids."""
    ca, cb = configs[a], configs[b]
    for name in PARTITION_FIELDS:
        va, vb = getattr(ca, name), getattr(cb, name)
        if va != vb:
            return _differ(a, b, name, va, vb, f"so their thetas index different {_what(name)}")
    layers_a, layers_b = _layout(model, a), _layout(model, b)
    field = _selection_field(ca, cb)
    if [key for key, _ in layers_a] != [key for key, _ in layers_b]:
        field = field or "target_modules"
        only = sorted({k[0] for k, _ in layers_a} ^ {k[0] for k, _ in layers_b})
        detail = f"adapted modules differ, e.g. {only[0]!r}" if only else "layouts differ"
        return _differ(a, b, field, getattr(ca, field), getattr(cb, field), f"so their {detail}")
    if field is not None and shared.partitions[a] != shared.partitions[b]:
        # Same modules at the same offsets: only the blocks of partition_scope=
        # "transformer_block" (layers_pattern) are left to differ.
        return _differ(
            a, b, field, getattr(ca, field), getattr(cb, field), "so their partitions differ"
        )
    for (key, layer), _ in zip(layers_a, layers_b, strict=True):
        ids_a, ids_b = (layer.gpart_ids[n] if n in layer.gpart_ids else None for n in (a, b))
        if (ids_a is None) != (ids_b is None) or (
            ids_a is not None and not torch.equal(ids_a, ids_b)
        ):
            return _regrouped(a, b, f"group ids in {key[0]!r}")
    if shared.partitions[a] != shared.partitions[b] or not torch.equal(
        shared.scales[a], shared.scales[b]
    ):
        return _regrouped(a, b, "group sizes")
    return None


def _regrouped(a: str, b: str, what: str) -> str:
    # Every field agrees: only ids computed from the base weights can still differ.
    return (
        f"{_WHERE}: adapters {a!r} and {b!r} agree in every partition field but their {what} "
        "differ: grouping_strategy='signed_magnitude' groups the base weights at injection, "
        "and they changed in between; create both adapters on the same base weights."
    )


def _what(field: str) -> str:
    if field == "bias":
        return "spaces (bias='none' leaves the adapted layers' biases out, 'gpart_only' adds them)"
    return "partitions"


def _differ(a: str, b: str, field: str, va: object, vb: object, consequence: str) -> str:
    return (
        f"{_WHERE}: adapters {a!r} and {b!r} differ in {field} ({va!r} vs {vb!r}), "
        f"{consequence}, and a weighted sum of thetas would be no weighted sum of their weight "
        f"updates; combine only adapters created with the same {field}."
    )


def _selection_field(ca: GPartConfig, cb: GPartConfig) -> str | None:
    """The first field selecting modules whose value differs (any spelling counts)."""
    for name in SELECTION_FIELDS:
        if _normalised(getattr(ca, name)) != _normalised(getattr(cb, name)):
            return name
    return None


def _normalised(value: object) -> object:
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(value)
    return value


def _layout(model: torch.nn.Module, adapter: str) -> list[tuple[tuple, GPartLayer]]:
    """(module name, offset, block, weight and bias entries) of every layer `adapter` adapts,
    in model order, with the layer."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, GPartLayer) and adapter in module.gpart_slot:
            slot = module.gpart_slot[adapter]
            rows.append(
                ((name, slot.offset, slot.block, slot.weight_numel, slot.bias_numel), module)
            )
    return rows

"""Where the paper authors' code (SamsungLabs/GPart at 320f0c1) is, for the tests that run it.

``GPART_REFERENCE_SRC`` names a checkout; without it, the copy every machine of this project
has beside the repository (``../shared/reference/GPart-320f0c1``, read only, never copied
in). `REFERENCE_SRC` is None where neither exists, and those tests skip.
`record_training_losses` records our side's per-step losses the way their workers do.
"""

from __future__ import annotations

import os
from pathlib import Path

import gpart.runners.core as core

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "GPart-320f0c1"
REFERENCE_SRC = os.environ.get("GPART_REFERENCE_SRC") or (
    str(_SHARED) if _SHARED.is_dir() else None
)
SKIP_REASON = (
    "the reference tree is absent: set GPART_REFERENCE_SRC to a checkout of SamsungLabs/GPart"
)


def record_training_losses(monkeypatch) -> list[float]:
    """The loss of every training forward pass of our runs, as the worker records theirs."""
    losses: list[float] = []
    apply = core.apply_adapter

    def apply_adapter(*args, **kwargs):
        model = apply(*args, **kwargs)

        def hook(module, inputs, output):
            if module.training:
                losses.append(output.loss.item())

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(core, "apply_adapter", apply_adapter)
    return losses

"""Where the paper authors' code (SamsungLabs/GPart at 320f0c1) is, for the tests that run it.

``GPART_REFERENCE_SRC`` names a checkout; without it, the copy every machine of this project
has beside the repository (``../shared/reference/GPart-320f0c1``, read only, never copied
in). `REFERENCE_SRC` is None where neither exists, and those tests skip.
"""

from __future__ import annotations

import os
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "GPart-320f0c1"
REFERENCE_SRC = os.environ.get("GPART_REFERENCE_SRC") or (
    str(_SHARED) if _SHARED.is_dir() else None
)
SKIP_REASON = (
    "the reference tree is absent: set GPART_REFERENCE_SRC to a checkout of SamsungLabs/GPart"
)

"""The benchmark's `--dtype` choices: name -> torch dtype.

Its own module, below both `runner` (which measures) and `memory` (whose probe processes
rebuild a setup from its name), so neither has to import the other for it.
"""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

"""Our commands print our output and real warnings only.

bitsandbytes (in the dev group, imported by peft whenever installed) logs a notice about
an optional CPU kernel package at import; `import gpart` drops that one record and nothing
else. Each case runs in a fresh interpreter: the notice fires once, at import.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpart

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# bitsandbytes' own wording (backends/cpu/ops.py), so this test sees it if it changes.
NOTICE_FORMAT = (
    "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you "
    "already `pip install kernels` and the kernels >= 0.11.1"
)


def _stderr(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_notice_is_dropped_and_every_other_record_of_bitsandbytes_shows():
    stderr = _stderr(
        "-c",
        "import logging, gpart\n"
        f"log = logging.getLogger({gpart.BNB_KERNELS_LOGGER!r})\n"
        f"log.warning({NOTICE_FORMAT!r}, \"No module named 'kernels'\")\n"
        "log.warning('another bitsandbytes warning')\n"
        "log.error('a bitsandbytes error')\n"
        "logging.getLogger('bitsandbytes.cextension').error('a library load error')\n",
    )
    assert "gemm_4bit_forward" not in stderr
    for shown in ("another bitsandbytes warning", "a bitsandbytes error", "a library load error"):
        assert shown in stderr


def test_without_gpart_the_notice_shows():
    # The filter is what hides it: the same record, logged without importing gpart, shows.
    stderr = _stderr(
        "-c",
        "import logging\n"
        "log = logging.getLogger('bitsandbytes.backends.cpu.ops')\n"
        f"log.warning({NOTICE_FORMAT!r}, 'x')\n",
    )
    assert "gemm_4bit_forward" in stderr


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed"
)
def test_a_command_prints_no_bitsandbytes_notice():
    bare = _stderr("-c", "import bitsandbytes")
    if "gemm_4bit_forward" not in bare:
        pytest.skip("this machine's bitsandbytes prints no kernels notice (no AVX512-BF16)")
    script = "src/scripts/glue/finetune_roberta_glue.py"
    stderr = _stderr(script, "--adapter_type", "gpart", "--print_config")
    assert "gemm_4bit_forward" not in stderr and "kernels" not in stderr, stderr

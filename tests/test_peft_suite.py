"""peft's own ``tests/test_custom_models.py`` run on GPart.

The tests of the *installed* peft come from its sdist on PyPI (``pip download --no-binary
:all: --no-deps peft==<version>``), cached under ``$GPART_CACHE`` (default
``~/.cache/gpart``), never copied into this repository. `peft_suite_plugin` adds GPart's
cases to peft's case lists and keeps only the tests that run them; every test either
passes or is skipped with the reason written in the plugin. Without PyPI (and no cached
sdist) this test skips.

Which tests: all of ``test_custom_models.py`` parametrized by peft's case lists
(``TEST_CASES``, ``MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES``, ``ALL_PEFT_CONFIG_CLASSES``), on
twelve single-adapter and two two-adapter GPart cases: about 700 tests, a few minutes
on two cores, hence ``slow``. peft's other test modules test its own methods, models from
the hub, or GPUs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _peft_tests() -> Path:
    """The extracted ``tests/`` of the installed peft's sdist, fetched once."""
    ver = version("peft")
    cache = Path(os.environ.get("GPART_CACHE", Path.home() / ".cache" / "gpart")) / "peft-sdist"
    tests = cache / f"peft-{ver}" / "tests"
    if (tests / "test_custom_models.py").exists():
        return tests
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
    got = subprocess.run(
        [*cmd, "-d", str(cache), f"peft=={ver}"], capture_output=True, text=True, timeout=300
    )
    sdist = cache / f"peft-{ver}.tar.gz"
    if got.returncode != 0 or not sdist.exists():
        pytest.skip(f"could not fetch the sdist of peft=={ver} from PyPI: {got.stderr[-300:]}")
    with tarfile.open(sdist) as tar:
        tar.extractall(cache, filter="data")
    return tests


@pytest.mark.slow
def test_peft_custom_models_suite_passes_on_gpart():
    tests = _peft_tests()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    # peft's tests/ is no package in the sdist (its modules import each other relatively):
    # importlib mode with namespace packages imports them as `tests.<module>`. Its own
    # pytest options (coverage) are not ours.
    args = ["-p", "peft_suite_plugin", "-o", "addopts=", "-o", "consider_namespace_packages=true"]
    args += ["--import-mode=importlib", "-p", "no:cacheprovider", "-q", "-rfEs", "--tb=short"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_custom_models.py", *args],
        cwd=tests.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) > 500, tail  # the GPart cases ran
    assert " failed" not in run.stdout.splitlines()[-1], tail

"""`import gpart` registers GPart with peft, yet `import gpart.results` stays light.

Each case runs in a fresh interpreter (what a module imports shows only there). Importing
peft takes seconds, so the interpreters are started together, once for this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "transformers", "peft")

CHECK_REGISTERED = """
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils.peft_types import PeftType
import gpart.tuner.config, gpart.tuner.model
print(json.dumps({
    "member": PeftType("GPART") is PeftType.GPART,
    "config": PEFT_TYPE_TO_CONFIG_MAPPING.get("GPART") is gpart.tuner.config.GPartConfig,
    "tuner": PEFT_TYPE_TO_TUNER_MAPPING.get("GPART") is gpart.tuner.model.GPartModel,
    "hook_left": [type(f).__name__ for f in sys.meta_path if hasattr(f, "is_gpart_peft_hook")],
    "loader": type(sys.modules["peft"].__spec__.loader).__name__,
    "same_loader": sys.modules["peft"].__loader__ is sys.modules["peft"].__spec__.loader,
}))
"""
REGISTERED = {
    "member": True,
    "config": True,
    "tuner": True,
    "hook_left": [],
    "loader": "SourceFileLoader",
    "same_loader": True,
}

SCRIPTS = {
    "light": f"""
        import gpart.results
        import gpart.results.collect
        import gpart.results.schema
        # configs and run names too: --print_config and table tools need no torch
        import gpart.configs
        import gpart.runners.identity
        # answer checking and re-scoring (gpart.evaluation.generate is the torch side)
        import gpart.evaluation
        import gpart
        import importlib.util
        # transformers asks this to see whether peft is installed: no import, no registration
        found = importlib.util.find_spec("peft") is not None
        try:
            gpart.nope
        except AttributeError as err:
            msg = str(err)
        print(json.dumps({{
            "heavy": [m for m in {HEAVY!r} if m in sys.modules],
            "version": gpart.__version__,
            "found": found,
            "msg": msg,
        }}))
    """,
    "gpart_then_peft": """
        import gpart
        assert "peft" not in sys.modules
        import peft
        assert hasattr(peft.PeftType, "GPART")
    """,
    "peft_then_gpart": """
        import peft
        assert not hasattr(peft.PeftType, "GPART")
        import gpart
    """,
    # the tuner imports peft itself: peft finishes loading while gpart.tuner is half-way
    "from_gpart_import": """
        from gpart import GPartConfig, GPartModel
        import gpart
        from gpart.tuner import GPART_PEFT_TYPE, register
        assert GPartConfig is gpart.tuner.GPartConfig and GPartModel is gpart.tuner.GPartModel
        assert gpart.register is register
        register()  # idempotent
        assert {"GPartConfig", "GPartModel", "tuner"} <= set(dir(gpart))
        assert GPartConfig(d=8).peft_type is GPART_PEFT_TYPE
    """,
    # a peft GPart cannot work with (here: a stub package): importing it still succeeds
    "broken_peft": """
        import warnings
        import gpart
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import peft
        print(json.dumps({
            "stub": peft.STUB,
            "hook_left": [f for f in sys.meta_path if hasattr(f, "is_gpart_peft_hook")] != [],
            "warnings": [str(w.message) for w in caught if "GPart" in str(w.message)],
        }))
    """,
}
# these end by printing what CHECK_REGISTERED finds
CHECKED = ("gpart_then_peft", "peft_then_gpart", "from_gpart_import")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Name -> the last stdout line (JSON) of each script, run concurrently."""
    stub = tmp_path_factory.mktemp("stub")
    (stub / "peft").mkdir()
    (stub / "peft" / "__init__.py").write_text("STUB = True\n")
    procs = {}
    for name, code in SCRIPTS.items():
        env = dict(os.environ)
        if name == "broken_peft":
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub), env.get("PYTHONPATH")]))
        script = "import json, sys\n" + textwrap.dedent(code)
        if name in CHECKED:
            script += CHECK_REGISTERED
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        results[name] = (proc.returncode, out, err)
    return results


def _result(runs, name: str) -> dict:
    returncode, out, err = runs[name]
    assert returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_results_and_bare_gpart_import_no_torch_transformers_peft(runs):
    assert _result(runs, "light") == {
        "heavy": [],
        "version": "0.1.0",
        "found": True,
        "msg": "module 'gpart' has no attribute 'nope'",
    }


def test_import_gpart_then_peft_registers(runs):
    assert _result(runs, "gpart_then_peft") == REGISTERED


def test_import_peft_then_gpart_registers(runs):
    assert _result(runs, "peft_then_gpart") == REGISTERED


def test_from_gpart_import_config_and_from_gpart_tuner_register(runs):
    assert _result(runs, "from_gpart_import") == REGISTERED


def test_failed_registration_warns_and_leaves_peft_importable(runs):
    got = _result(runs, "broken_peft")
    assert got["stub"] is True and got["hook_left"] is False
    assert len(got["warnings"]) == 1
    assert got["warnings"][0].startswith(
        "GPart could not register with peft (ModuleNotFoundError: No module named 'peft.mapping'"
    ), got["warnings"]

"""The README's offline example runs as documented."""

import runpy
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_quickstart_example_runs_offline(capsys):
    # As `python examples/quickstart.py` runs it (the file as __main__), in this process:
    # a fresh interpreter spends tens of seconds importing torch, transformers and peft on
    # 2 cores without compiled bytecode; GPart's registration when a fresh interpreter
    # imports it is test_lazy_import.py's.
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "reloaded logits identical: True" in out
    assert "merged logits match: True" in out

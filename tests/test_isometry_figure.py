"""The isometry figure's data: exactly 1 for GPart, not for its controls and baselines."""

from __future__ import annotations

import json

import pytest

from gpart.bench.isometry import main


def test_isometry_ratios_per_method(tmp_path):
    out = tmp_path / "fig" / "isometry"
    assert main(["--model_config", "roberta-tiny", "--d", "128", "--pairs", "8", "--out",
                 str(out)]) == 0  # fmt: skip
    assert out.with_suffix(".png").exists() and out.with_suffix(".pdf").exists()
    ratios = json.loads(out.with_suffix(".json").read_text())["ratios"]
    assert all(r == pytest.approx(1.0, abs=1e-5) for r in ratios["GPart"])
    # 1/sqrt(group size) dropped: updates grow with the group size, far from 1.
    assert min(ratios["GPart (non-isometric)"]) > 1.5
    # Fastfood: isometric in expectation only -- near 1, not exactly 1.
    fastfood = ratios["Fastfood"]
    assert 0.7 < sum(fastfood) / len(fastfood) < 1.3
    assert max(abs(r - 1) for r in fastfood) > 1e-4
    for method in ("Uni-LoRA", "LoRA"):
        assert len(ratios[method]) == 8 and max(abs(r - 1) for r in ratios[method]) > 0.1


def test_bad_sizes_exit_2(tmp_path, capsys):
    assert main(["--pairs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "must be positive" in capsys.readouterr().err

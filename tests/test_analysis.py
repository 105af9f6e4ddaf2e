"""The landscape and theta figures on tiny finished runs (`gpart.runners.analysis`).

Checked against what the runs recorded themselves (Trainer's selection ``eval_loss``, the
saved adapter file) and against the merged model's weights, not against this code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from glue_env import write_glue_data, write_tiny_model
from gpart.results.plots import main
from gpart.runners import analysis
from gpart.runners import glue as glue_runner
from test_runners_core import FakeDomain, _main, _runs

GLUE_FAST = ["training.epochs", "2", "task.epochs", "2", "training.batch_size", "16",
             "training.max_seq_length", "32", "training.num_workers", "0",
             "training.logging_steps", "1", "training.report_to", "none",
             "training.lr", "0.05"]  # fmt: skip


@pytest.fixture(scope="module")
def glue_runs(tmp_path_factory):
    """GPart (two seeds) and LoRA on the tiny RTE, finished: {"gpart": [runs], "lora": [run]}."""
    root = tmp_path_factory.mktemp("glue_analysis")
    data = write_glue_data(root / "data", tasks=("rte",))
    model = write_tiny_model(root / "roberta")
    flags = ["--base_model", str(model), "--data_dir", str(data), "--output_dir",
             str(root / "logs"), "--tasks", "rte"]  # fmt: skip
    gpart = ["--adapter_type", "gpart", "--seed", "0", "1", *flags, "adapter.d", "64"]
    assert glue_runner.main([*gpart, *GLUE_FAST]) == 0
    assert glue_runner.main(["--adapter_type", "lora", "--seed", "0", *flags, *GLUE_FAST]) == 0
    runs = sorted(p.parent for p in (root / "logs").rglob("results.json"))
    return {
        "gpart": [r for r in runs if r.parts[-3].startswith("gpart_")],
        "lora": [r for r in runs if r.parts[-3].startswith("lora_")],
        "root": root,
    }


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A finished run of the fake domain (full fine-tuning of a 4-8-2 network)."""
    out = tmp_path_factory.mktemp("fake") / "logs"
    assert _main(FakeDomain(), out, "--tasks", "sst2", "training.report_to", "none") == 0
    (run,) = _runs(out)
    return run


# ------------------------------------------------------------------------ directions
def test_directions_are_filter_normalised_and_seeded():
    star = [torch.randn(5, 3), torch.randn(7), torch.zeros(2, 4)]
    d = analysis.filter_normalised_direction(star, torch.Generator().manual_seed(3))
    again = analysis.filter_normalised_direction(star, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(d, again, strict=True))
    # Li et al. (2018): every row of a matrix as long as theta*'s row; a vector as a whole.
    torch.testing.assert_close(d[0].norm(dim=1), star[0].norm(dim=1))
    torch.testing.assert_close(d[1].norm(), star[1].norm())
    assert torch.count_nonzero(d[2]) == 0  # an untrained (zero) filter is not moved
    other = analysis.filter_normalised_direction(star, torch.Generator().manual_seed(4))
    assert not torch.equal(d[0], other[0])


# ------------------------------------------------------------------------ landscape
def test_the_grid_is_the_loss_at_each_point_and_the_centre_the_recorded_one(fake_run):
    loaded = analysis.load_run(fake_run, FakeDomain())
    got = analysis.landscape_of_run(loaded, grid=5, span=0.5, seeds=2, seed=7, progress=False)
    recorded = analysis.recorded_selection_loss(fake_run)  # Trainer's eval_loss at best step
    assert recorded is not None
    assert got["centre_loss"] == pytest.approx(recorded, rel=1e-5)
    assert got["surface"][2][2] == pytest.approx(recorded, rel=1e-5)
    assert got["dim"] == 4 * 8 + 8 and got["tensors"] == ["body.weight", "body.bias"]
    assert got["samples"] == 16 and len(got["surfaces"]) == 2

    # An independent evaluation of one grid point: the network by hand, plain cross entropy.
    from safetensors.torch import load_file

    from test_runners_core import _rows

    saved = load_file(str(fake_run / "adapter" / "trainable.safetensors"))
    star = [saved["body.weight"], saved["body.bias"]]
    gen = torch.Generator().manual_seed(8)  # the second seed's pair
    d1 = analysis.filter_normalised_direction(star, gen)
    d2 = analysis.filter_normalised_direction(star, gen)
    a, b = -0.5, 0.25  # row 0 (alpha), column 3 (beta) of a 5-point axis over [-0.5, 0.5]
    w, bias = (s + a * u + b * v for s, u, v in zip(star, d1, d2, strict=True))
    sel = _rows(16, 100)
    x = torch.tensor(sel["features"])
    logits = torch.tanh(x @ w.T + bias) @ saved["classifier.weight"].T + saved["classifier.bias"]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(sel["labels"]))
    assert got["surfaces"][1][0][3] == pytest.approx(expected.item(), rel=1e-5)
    # the model is left at theta*
    torch.testing.assert_close(loaded.model.body.weight.detach(), saved["body.weight"])


def test_landscape_command_writes_figure_and_json_and_redraws_from_it(glue_runs, tmp_path):
    runs = [glue_runs["gpart"][0], glue_runs["lora"][0]]
    out = tmp_path / "figs" / "rte_landscape"
    argv = ["landscape", *map(str, runs), "--grid", "3", "--span", "0.5", "--seeds", "2",
            "--labels", "GPart", "LoRA", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    for suffix in (".png", ".pdf", ".json"):
        assert out.with_suffix(suffix).stat().st_size > 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["label"] for r in data["runs"]] == ["GPart", "LoRA"]
    assert data["alphas"] == [-0.5, 0.0, 0.5] and data["grid"] == 3
    for run, entry in zip(runs, data["runs"], strict=True):
        surface = np.asarray(entry["surface"])
        assert surface.shape == (3, 3) and np.isfinite(surface).all()
        assert np.isfinite(np.asarray(entry["surfaces"])).all()
        # the whole selection split (fewer than 1,024 examples): the run's own eval_loss
        assert entry["samples"] == entry["total_samples"]
        recorded = analysis.recorded_selection_loss(run)
        assert entry["centre_loss"] == pytest.approx(recorded, rel=1e-5)
        assert surface[1, 1] == pytest.approx(recorded, rel=1e-5)
    assert data["runs"][0]["dim"] == 64  # GPart's theta alone: the head is not moved
    assert data["runs"][0]["tensors"] == ["base_model.gpart_theta_d.default"]
    assert all("lora_" in t for t in data["runs"][1]["tensors"])

    redrawn = tmp_path / "figs" / "again"
    assert main(["landscape", "--from_json", str(out.with_suffix(".json")), "--out",
                 str(redrawn)]) == 0  # fmt: skip
    assert redrawn.with_suffix(".png").stat().st_size > 0
    assert not redrawn.with_suffix(".json").exists()  # nothing recomputed


def test_landscape_bad_input_is_one_line(fake_run, glue_runs, tmp_path, capsys):
    run = str(glue_runs["gpart"][0])
    assert main(["landscape", run, "--grid", "1", "--out", str(tmp_path / "x")]) == 2
    assert "needs --grid >= 2" in capsys.readouterr().err
    assert main(["landscape", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["landscape", run, "--labels", "a", "b", "--out", str(tmp_path / "x")]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err
    assert main(["theta", "--from_json", str(tmp_path / "x.json"), "--out", "y"]) == 2
    capsys.readouterr()
    land = tmp_path / "l.json"
    land.write_text(json.dumps({"figure": "landscape", "runs": []}))
    assert main(["theta", "--from_json", str(land), "--out", str(tmp_path / "y")]) == 2
    assert "holds a 'landscape' figure, not 'theta'" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob("y.*"))


def test_a_head_only_run_has_no_vector_to_look_at(tmp_path, capsys):
    out = tmp_path / "logs"
    assert _main(FakeDomain(), out, "--tasks", "sst2", "--adapter_type", "head",
                 "training.report_to", "none") == 0  # fmt: skip
    (run,) = _runs(out)
    with pytest.raises(analysis.ConfigError, match="trained nothing outside its head"):
        analysis.trainable_space(analysis.load_run(run, FakeDomain()))


# ------------------------------------------------------------------------ theta
def test_theta_is_the_saved_vector_and_the_update_what_merging_adds(glue_runs):
    from peft import PeftModel
    from safetensors.numpy import load_file
    from transformers import AutoModelForSequenceClassification

    run = glue_runs["gpart"][0]
    values = analysis.theta_values(analysis.load_run(run))
    (saved,) = [v for k, v in load_file(str(run / "adapter" / "adapter_model.safetensors")).items()
                if "gpart_theta" in k]  # fmt: skip
    np.testing.assert_array_equal(np.asarray(values["theta"], dtype=np.float32), saved)

    # Every adapted weight moves by its group's s_j * theta_j when the adapter is merged.
    cfg = json.loads((run / "config.json").read_text())["config"]
    base = AutoModelForSequenceClassification.from_pretrained(
        cfg["model"]["base_model"], num_labels=2
    )
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    merged = PeftModel.from_pretrained(base, run / "adapter").merge_and_unload()
    update = np.asarray(values["update"])
    deltas = []
    for name, p in merged.named_parameters():
        if name in before and "classifier" not in name:
            delta = (p.detach() - before[name]).flatten().numpy()
            deltas.append(delta[delta != 0])
    deltas = np.concatenate(deltas)
    assert deltas.size > update.size  # groups hold many entries each
    nearest = np.abs(deltas[:, None] - update[None, :]).min(axis=1)
    assert nearest.max() < 1e-6 * max(1.0, np.abs(update).max())
    # isometry: the update's norm over all adapted entries is theta's norm
    assert math.isclose(float(np.sum(deltas**2)), float(np.sum(saved**2)), rel_tol=1e-4)


def test_theta_command_pools_seeds_or_keeps_runs_apart(glue_runs, tmp_path):
    gpart_sweep = glue_runs["gpart"][0].parent  # the task folder: both seeds below it
    out = tmp_path / "theta"
    assert main(["theta", str(gpart_sweep), str(glue_runs["lora"][0]), "--bins", "20",
                 "--out", str(out)]) == 0  # fmt: skip
    data = json.loads(out.with_suffix(".json").read_text())
    gpart, lora = data["series"]
    assert gpart["seeds"] == [0, 1] and gpart["theta"]["n"] == 2 * 64
    assert sum(gpart["theta"]["counts"]) == 128 and len(gpart["theta"]["edges"]) == 21
    assert gpart["update"]["n"] == 128 and lora["update"] is None
    values = np.concatenate(
        [analysis.theta_values(analysis.load_run(r))["theta"] for r in glue_runs["gpart"]]
    )
    assert gpart["theta"]["std"] == pytest.approx(float(np.std(values)))
    assert all(math.isfinite(v) for v in (gpart["theta"]["mean"], lora["theta"]["std"]))
    for suffix in (".png", ".pdf"):
        assert out.with_suffix(suffix).stat().st_size > 0

    per_run = tmp_path / "theta_runs"
    assert main(["theta", str(gpart_sweep), "--per_run", "--out", str(per_run)]) == 0
    series = json.loads(per_run.with_suffix(".json").read_text())["series"]
    assert [s["seeds"] for s in series] == [[0], [1]]

"""Runs the paper authors' GLUE training (SamsungLabs/GPart at 320f0c1,
``src/utils/trainer.py::run_task``, what their ``finetune_roberta_glue.py`` calls per task) for
`tests/test_reference_parity_glue.py`, in a process of its own with their tree first on
``PYTHONPATH`` (``import peft`` is their fork; ``gpart`` is never imported).

    python reference_glue_worker.py SPEC.json OUT.json

SPEC.json: ``{"ref_src", "data_dir", "task", "base_model", "seed", "adapter_type", "opts",
"threads"}`` (``adapter_type``: their ``--adapter_type``, default ``gpart``; ``opts``: their
``KEY VALUE`` overrides; ``threads``: torch's, as the test's side runs). Their hub and metric downloads are shimmed here, and only here:
``datasets.load_dataset("nyu-mll/glue", task)`` reads ``<data_dir>/<task>/{train,validation}.jsonl``
typed as the hub's GLUE (``label`` a ``ClassLabel``), and ``evaluate.load("glue", task)`` is
accuracy, which is what GLUE's metric computes for sst2. OUT.json gets the loss of every
training forward pass, the selection split's ``idx`` and the train split's ``idx`` in order,
the returned metrics, and the selected model's adapter tensors (GPart's theta, LoRA's
factors, VeRA's scaling vectors; keyed as peft saves them, without the adapter name) and
head.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np


class _Accuracy:
    """The part of `evaluate`'s GLUE metric sst2 uses: accumulate, then accuracy."""

    def __init__(self) -> None:
        self.preds: list[int] = []
        self.refs: list[int] = []

    def add_batch(self, predictions, references) -> None:
        self.preds += np.asarray(predictions).tolist()
        self.refs += np.asarray(references).tolist()

    def compute(self) -> dict[str, float]:
        return {"accuracy": float(np.mean(np.asarray(self.preds) == np.asarray(self.refs)))}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sys.path[:0] = [spec["ref_src"], str(Path(spec["ref_src"]) / "src")]
    evaluate = types.ModuleType("evaluate")
    evaluate.load = lambda name, task=None, **kw: _Accuracy()  # noqa: ARG005
    sys.modules["evaluate"] = evaluate

    import datasets
    import torch

    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))

    from training_probes import record_training_losses  # beside this file

    data_dir = Path(spec["data_dir"])
    load_local = datasets.load_dataset

    def load_dataset(path, name=None, **kwargs):
        assert path == "nyu-mll/glue", path
        files = {s: str(data_dir / name / f"{s}.jsonl") for s in ("train", "validation")}
        raw = load_local("json", data_files=files)
        return raw.cast_column("label", datasets.ClassLabel(names=["negative", "positive"]))

    datasets.load_dataset = load_dataset

    import utils.data_loader_utils as dlu
    import utils.trainer as ref_trainer
    from configs.config import load_config
    from utils.adapter_utils import get_peft_config, logger
    from utils.training_config import RunTaskConfig

    record: dict = {"losses": []}
    split = dlu.split_train_val

    def split_train_val(train, seed, **kwargs):
        tr, val = split(train, seed, **kwargs)
        record["train_idx"] = list(tr["idx"])
        record["selection_idx"] = list(val["idx"])
        return tr, val

    dlu.split_train_val = split_train_val
    apply = ref_trainer.apply_adapter
    models = []

    def apply_adapter(*args, **kwargs):
        models.append(record_training_losses(apply(*args, **kwargs), record["losses"]))
        return models[-1]

    ref_trainer.apply_adapter = apply_adapter

    task = spec["task"]
    adapter_type = spec.get("adapter_type", "gpart")
    config = load_config(adapter_type=adapter_type, task_name=task, opts=spec["opts"])
    run_cfg = RunTaskConfig.from_configs(
        task_name=task,
        base_model_name=spec["base_model"],
        output_root=str(Path(out_path).parent / "reference_runs"),
        seed=spec["seed"],
        adapter_type=adapter_type,
        config=config,
        compute_params_only=False,
        main_seed=spec["seed"],
        load_adapter=None,
        task_mlflow_run=None,
    )
    record["metrics"] = ref_trainer.run_task(run_cfg, get_peft_config, logger)
    (model,) = models
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record["adapter"] = {
        k.replace(".default", ""): v.tolist()
        for k, v in state.items()
        if any(m in k for m in ("gpart_theta", "lora_", "vera_lambda"))
    }
    record["head"] = {
        k: v.tolist() for k, v in state.items() if "classifier" in k and "modules_to_save" in k
    }
    record["torch_rng_after"] = int(torch.empty((), dtype=torch.int64).random_().item())
    Path(out_path).write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:])

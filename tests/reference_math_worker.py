"""Runs the paper authors' MetaMathQA fine-tuning (SamsungLabs/GPart at 320f0c1,
``src/scripts/math/finetune_metamath.py``, its ``main()`` as their command line calls it)
for `tests/test_reference_parity_math.py`, in a process of its own with their tree first on
``PYTHONPATH`` (``import peft`` is their fork; ``gpart`` is never imported).

    python reference_math_worker.py SPEC.json OUT.json

SPEC.json: ``{"ref_src", "train_file", "argv", "rows"}`` (``argv``: their command line).
Shimmed here, and only here, what assumes a GPU or the hub: the dataset download
(``load_dataset(name, split="train")`` reads the local jsonl ``train_file``), bf16 (their
``--bf16`` cannot be turned off from the command line: the parsed flag is set to false, so
the run is fp32 on a CPU), and ``TrainingArguments(warmup_ratio=...)``, a keyword that
transformers 5 folded into ``warmup_steps`` (a float below 1 is the ratio there, with the
same ``ceil(steps * ratio)``). Nothing after training runs in their script but saving.

OUT.json gets the loss of every training forward pass, the first batch the collator
built, the optimizer steps taken, the final theta, and their tokenisation of ``rows``
with their system prompt (``tokenize_example(..., use_system_prompt=True)``) and its text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ref_src = Path(spec["ref_src"])
    sys.path[:0] = [str(ref_src), str(ref_src / "src"), str(ref_src / "src" / "scripts" / "math")]

    import datasets
    import finetune_metamath as fm

    from training_probes import record_training_losses  # beside this file

    record: dict = {"losses": []}
    load_local = datasets.load_dataset

    def load_dataset(name, split=None, **kwargs):
        assert split == "train", split
        return load_local("json", data_files=spec["train_file"], split="train")

    fm.load_dataset = load_dataset

    parse = fm.parse_args

    def parse_args():
        args = parse()
        args.bf16 = False  # their store_true flag defaults to True: fp32 on a CPU
        return args

    fm.parse_args = parse_args
    training_arguments = fm.TrainingArguments

    def TrainingArguments(**kwargs):  # noqa: N802 - stands in for the class
        kwargs["warmup_steps"] = kwargs.pop("warmup_ratio")
        return training_arguments(**kwargs)

    fm.TrainingArguments = TrainingArguments
    collate = fm.CausalLMDataCollator.__call__

    def first_batch_recorded(self, features):
        batch = collate(self, features)
        record.setdefault("first_batch", {k: v.tolist() for k, v in batch.items()})
        return batch

    fm.CausalLMDataCollator.__call__ = first_batch_recorded
    get_peft_model = fm.get_peft_model
    models = []

    def peft_model_hooked(*args, **kwargs):
        models.append(record_training_losses(get_peft_model(*args, **kwargs), record["losses"]))
        return models[-1]

    fm.get_peft_model = peft_model_hooked
    trainer_cls = fm.Trainer
    trainers = []

    def trainer_kept(*args, **kwargs):
        trainers.append(trainer_cls(*args, **kwargs))
        return trainers[-1]

    fm.Trainer = trainer_kept

    sys.argv = ["finetune_metamath.py", *spec["argv"]]
    fm.main()

    (model,) = models
    (trainer,) = trainers
    record["steps"] = trainer.state.global_step
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record["theta"] = next(v for k, v in state.items() if "gpart_theta" in k).tolist()
    tokenizer = trainer.processing_class
    record["system_prompt"] = fm.SYSTEM_PROMPT
    record["with_system_prompt"] = [
        fm.tokenize_example(row, tokenizer, max_seq_length=10_000, use_system_prompt=True)
        for row in spec["rows"]
    ]
    Path(out_path).write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:])

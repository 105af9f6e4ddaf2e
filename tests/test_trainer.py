"""Parameter groups (lr / decay per role), parameter counts, exact warmup and step counts."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from datasets import Dataset
from torch import nn
from transformers import (
    TrainerCallback,
    TrainingArguments,
)

from gpart.training.trainer import (
    GroupedTrainer,
    build_param_groups,
    count_training_steps,
    warmup_steps_from_ratio,
)
from tiny_models import tiny_roberta


class ToyAdapted(nn.Module):
    """Parameter names like an adapted encoder: theta, an adapted linear, a LayerNorm, a
    frozen embedding and a two-layer classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.embed.weight.requires_grad_(False)
        self.query = nn.Linear(4, 4)
        self.LayerNorm = nn.LayerNorm(4)
        self.gpart_theta = nn.Parameter(torch.zeros(6))
        self.classifier = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))


def _groups_by_name(groups):
    return {g["name"]: g for g in groups}


def _ids(params):
    return {id(p) for p in params}


@pytest.mark.parametrize("decay_theta", [False, True])
def test_groups_get_their_lr_and_decay(decay_theta):
    m = ToyAdapted()
    groups = _groups_by_name(
        build_param_groups(
            m,
            lr=1e-2,
            head_lr=4e-3,
            weight_decay=0.1,
            head_weight_decay=0.05,
            decay_theta=decay_theta,
        )
    )
    adapter_decay = {id(m.query.weight)} | ({id(m.gpart_theta)} if decay_theta else set())
    adapter_free = {id(m.query.bias), id(m.LayerNorm.weight), id(m.LayerNorm.bias)} | (
        set() if decay_theta else {id(m.gpart_theta)}
    )
    head = m.classifier
    assert _ids(groups["adapter"]["params"]) == adapter_decay
    assert _ids(groups["adapter_no_decay"]["params"]) == adapter_free
    assert _ids(groups["head"]["params"]) == {id(head[0].weight), id(head[1].weight)}
    assert _ids(groups["head_no_decay"]["params"]) == {id(head[0].bias), id(head[1].bias)}
    assert (groups["adapter"]["lr"], groups["adapter"]["weight_decay"]) == (1e-2, 0.1)
    assert (groups["adapter_no_decay"]["lr"], groups["adapter_no_decay"]["weight_decay"]) == (
        1e-2,
        0.0,
    )
    assert (groups["head"]["lr"], groups["head"]["weight_decay"]) == (4e-3, 0.05)
    assert (groups["head_no_decay"]["lr"], groups["head_no_decay"]["weight_decay"]) == (4e-3, 0.0)
    all_ids = set().union(*(_ids(g["params"]) for g in groups.values()))
    assert id(m.embed.weight) not in all_ids  # frozen: not optimised


@pytest.mark.parametrize("decay_theta", [False, True])
def test_decay_biases_and_norms_decays_every_tensor_but_an_exempted_theta(decay_theta):
    # The vision reference's AdamW: weight decay on every trainable tensor, the head's bias
    # and the norms too; decay_theta still decides theta's.
    m = ToyAdapted()
    groups = _groups_by_name(
        build_param_groups(
            m, lr=1e-2, head_lr=4e-3, weight_decay=0.01, decay_theta=decay_theta,
            decay_biases_and_norms=True,
        )
    )  # fmt: skip
    adapter = {id(m.query.weight), id(m.query.bias), id(m.LayerNorm.weight), id(m.LayerNorm.bias)}
    theta = {id(m.gpart_theta)}
    assert _ids(groups["adapter"]["params"]) == adapter | (theta if decay_theta else set())
    assert _ids(groups["head"]["params"]) == _ids(m.classifier.parameters())
    assert "head_no_decay" not in groups
    if decay_theta:
        assert "adapter_no_decay" not in groups
    else:
        assert _ids(groups["adapter_no_decay"]["params"]) == theta
    assert groups["head"]["weight_decay"] == groups["adapter"]["weight_decay"] == 0.01


@pytest.mark.parametrize("decay_vectors", [False, True])
def test_decay_vectors_decides_the_other_1d_tensors_and_leaves_theta_alone(decay_vectors):
    # The GLUE reference decays no 1-D tensor but GPart's theta: VeRA's scaling vectors and
    # Uni-LoRA's theta_d train undecayed there.
    m = ToyAdapted()
    m.vera_lambda_b = nn.Parameter(torch.ones(4))
    groups = _groups_by_name(
        build_param_groups(m, lr=1e-2, weight_decay=0.1, decay_vectors=decay_vectors)
    )
    decayed = _ids(groups["adapter"]["params"])
    assert id(m.gpart_theta) in decayed and id(m.query.weight) in decayed
    assert (id(m.vera_lambda_b) in decayed) == decay_vectors
    assert id(m.query.bias) in _ids(groups["adapter_no_decay"]["params"])


def test_defaults_and_empty_groups():
    m = ToyAdapted()
    for p in m.classifier.parameters():
        p.requires_grad_(False)
    groups = _groups_by_name(build_param_groups(m, lr=1e-3, weight_decay=0.01))
    assert set(groups) == {"adapter", "adapter_no_decay"}  # no head group when frozen
    # theta is decayed by default, like every adapter tensor (training.decay_theta)
    assert id(m.gpart_theta) in _ids(groups["adapter"]["params"])
    m2 = ToyAdapted()
    g2 = _groups_by_name(build_param_groups(m2, lr=1e-3, weight_decay=0.01))
    assert (
        g2["head"]["lr"] == 1e-3 and g2["head"]["weight_decay"] == 0.01
    )  # head_* default to adapter
    for p in m2.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        build_param_groups(m2, lr=1e-3)


def test_peft_lora_head_is_found_under_modules_to_save():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_roberta(num_labels=2),
        LoraConfig(r=2, target_modules=["query", "value"], modules_to_save=["classifier"]),
    )
    groups = _groups_by_name(build_param_groups(model, lr=1e-3, head_lr=1e-2, weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    head_names = {names[id(p)] for g in ("head", "head_no_decay") for p in groups[g]["params"]}
    assert set(groups) == {"adapter", "head", "head_no_decay"}  # LoRA matrices have no bias
    adapter_names = {names[id(p)] for p in groups["adapter"]["params"]}
    assert head_names and all("modules_to_save" in n for n in head_names)
    assert adapter_names and all("lora_" in n for n in adapter_names)
    # The one parameter counter finds the same head under peft's wrapper.
    from gpart.params import parameter_breakdown

    counts = parameter_breakdown(model, ["classifier"])
    assert counts["trainable_adapter"] == sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n
    )
    assert counts["trainable_head"] == sum(
        p.numel() for p in model.base_model.model.classifier.modules_to_save.parameters()
    )
    assert counts["trainable"] == counts["trainable_adapter"] + counts["trainable_head"]


def test_step_counts_and_warmup():
    # 37 examples, batch 4 -> 10 batches; accumulation 2 -> 5 optimizer steps per epoch
    assert count_training_steps(37, 4, num_epochs=3, gradient_accumulation_steps=2) == 15
    assert (
        count_training_steps(37, 4, num_epochs=3, gradient_accumulation_steps=2, drop_last=True)
        == 15
    )
    assert (
        count_training_steps(40, 4, num_epochs=1, gradient_accumulation_steps=3) == 4
    )  # 10 -> 3+1
    assert count_training_steps(37, 4, num_epochs=1, world_size=2) == 5  # 19 per shard
    assert count_training_steps(37, 4, num_epochs=2.5) == 25
    assert count_training_steps(37, 4, max_steps=7) == 7
    assert warmup_steps_from_ratio(100, 0.07) == 7  # 0.07 * 100 = 7.000000000000001 in floats
    assert warmup_steps_from_ratio(15, 0.2) == 3
    assert warmup_steps_from_ratio(15, 0.1) == 2
    assert warmup_steps_from_ratio(15, 0.0) == 0
    with pytest.raises(ValueError):
        warmup_steps_from_ratio(10, 1.5)


class LrRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.trainer = None
        self.history: list[list[float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.history.append(list(self.trainer.lr_scheduler.get_last_lr()))


def _schedule(kind: str, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_trainer_schedule_spans_the_exact_step_count(tmp_path, kind):
    n, batch, accum, epochs, ratio = 37, 4, 2, 3, 0.2
    g = torch.Generator().manual_seed(0)
    data = Dataset.from_dict(
        {
            "input_ids": torch.randint(3, 40, (n, 6), generator=g).tolist(),
            "labels": torch.randint(0, 2, (n,), generator=g).tolist(),
        }
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        num_train_epochs=epochs,
        learning_rate=1e-3,
        weight_decay=0.01,
        lr_scheduler_type=kind,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    recorder = LrRecorder()
    trainer = GroupedTrainer(
        model=tiny_roberta(num_labels=2),
        args=args,
        train_dataset=data,
        head_lr=5e-3,
        warmup_ratio=ratio,
        callbacks=[recorder],
    )
    recorder.trainer = trainer
    trainer.train()

    total = count_training_steps(n, batch, num_epochs=epochs, gradient_accumulation_steps=accum)
    warmup = warmup_steps_from_ratio(total, ratio)
    assert (total, warmup) == (15, 3)
    assert trainer.state.max_steps == total == trainer.state.global_step
    assert len(recorder.history) == total
    names = [grp["name"] for grp in trainer.optimizer.param_groups]
    assert names == ["adapter", "adapter_no_decay", "head", "head_no_decay"]
    base = [1e-3 if nm.startswith("adapter") else 5e-3 for nm in names]
    for step, lrs in enumerate(recorder.history, start=1):
        factor = _schedule(kind, step, total, warmup)
        assert lrs == pytest.approx([b * factor for b in base], abs=1e-12), step
    assert recorder.history[warmup - 1] == pytest.approx(base)  # peak right after warmup
    assert recorder.history[-1] == pytest.approx([0.0] * 4, abs=1e-12)  # ends exactly at 0


def test_trainer_rejects_bad_warmup_ratio(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="warmup_ratio"):
        GroupedTrainer(model=tiny_roberta(num_labels=2), args=args, warmup_ratio=2.0)


def test_exact_warmup_is_transformers_own_at_the_math_presets_ratio(tmp_path):
    # The math presets run Trainer's schedule as the reference's script does: at 0.05 the
    # "exact" rule's tolerance for float noise never changes a count
    ratio_args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, warmup_steps=0.05
    )
    totals = range(1, 200_000)
    assert [warmup_steps_from_ratio(t, 0.05) for t in totals] == [
        ratio_args.get_warmup_steps(t) for t in totals
    ]
    assert warmup_steps_from_ratio(100, 0.07) != math.ceil(100 * 0.07)  # where they differ

"""The math (MetaMathQA) training runner, offline: templates, labels, the length policy,
the token cache, and a few GPart / LoRA steps through `main` on tiny decoders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gpart.data.loading import read_split_file
from gpart.data.math import (
    IGNORE_INDEX,
    TEMPLATES,
    causal_lm_collator,
    encode_example,
    encode_prompt,
    encode_question_answer,
    render_example,
    render_prompt,
    tokenize_math,
)
from gpart.runners import math as runner
from math_env import rows, tiny_tokenizer, write_jsonl, write_tiny_decoder
from training_probes import with_callback

FAST = ["training.epochs", "1", "training.batch_size", "4", "training.grad_accum", "1",
        "training.num_workers", "0", "training.logging_steps", "1", "training.precision",
        "fp32", "training.max_seq_length", "256", "data.heldout_samples", "8",
        "training.gradient_checkpointing", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("math")
    return {
        "llama": write_tiny_decoder(root / "llama", "llama"),
        "qwen2": write_tiny_decoder(root / "qwen2", "qwen2"),
        "data": write_jsonl(root / "data" / "metamathqa" / "train.jsonl", rows(40)),
    }


@pytest.fixture(autouse=True)
def token_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPART_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenized"


# ------------------------------------------------------------------------ templates
def test_each_template_renders_its_documented_string():
    q, r = "What is 1 + 2?", "1 + 2 = 3"
    assert render_example("plain", q, r) == ("Question: What is 1 + 2?\nAnswer: ", r)
    assert render_prompt("plain", q, system_prompt="Be brief.") == (
        "Be brief.\n\nQuestion: What is 1 + 2?\nAnswer: "
    )
    assert render_prompt("alpaca", q) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nWhat is 1 + 2?\n\n### Response:\n"
    )
    chat = tiny_tokenizer(bos=False, chat=True)
    prompt, completion = render_example("chat", q, r, system_prompt="S", tokenizer=chat)
    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert completion == "1 + 2 = 3<|im_end|>\n"
    # the GPart authors' text: stripped, the response after "Answer: " in one piece
    assert render_example("question_answer", f" {q}\n", f"\n{r} ") == (
        "Question: What is 1 + 2?\nAnswer:",
        " 1 + 2 = 3",
    )
    assert set(TEMPLATES) == {"plain", "alpaca", "chat", "question_answer"}


def test_chat_needs_a_chat_template_and_unknown_names_fail():
    from gpart.data.loading import DataError

    with pytest.raises(DataError, match="no chat template"):
        render_prompt("chat", "q", tokenizer=tiny_tokenizer(bos=True, chat=False))
    with pytest.raises(DataError, match="unknown template 'alpacca'"):
        render_prompt("alpacca", "q")


# ------------------------------------------------------------------------ labels
@pytest.mark.parametrize("bos", [True, False])
def test_labels_mask_exactly_the_prompt_and_the_response_ends_with_eos(bos):
    tok = tiny_tokenizer(bos=bos, chat=False)
    prompt, completion = render_example("plain", "What is 12 + 13?", "12 + 13 = 25")
    ids, labels = encode_example(tok, prompt, completion, template="plain")
    n_prompt = len(tok(prompt)["input_ids"])
    assert (ids[0] == tok.bos_token_id) is bos
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:-1]) == "12 + 13 = 25"
    ids2, labels2 = encode_example(tok, prompt, completion, template="plain", train_on_prompt=True)
    assert ids2 == ids and labels2 == ids


@pytest.mark.parametrize("bos", [True, False])
def test_question_answer_is_the_reference_layout(bos):
    # BOS by id whenever the tokenizer has one, the system prompt alone and unlabelled, the
    # text in one piece and labelled, EOS last (the GPart authors' tokenize_example)
    tok = tiny_tokenizer(bos=bos, chat=False)
    tok.bos_token = "<s>"  # a BOS the tokenizer's own encoding adds only when `bos`
    q, r = " What is 12 + 34?", "12 + 34 = 46\n"
    ids, labels = encode_question_answer(tok, q, r, system_prompt="Be brief.")
    text = tok("Question: What is 12 + 34?\nAnswer: 12 + 34 = 46", add_special_tokens=False)
    prefix = tok("Be brief.\n\n", add_special_tokens=False)["input_ids"]
    bos_id, eos = tok.convert_tokens_to_ids("<s>"), tok.eos_token_id
    assert ids == [bos_id, *prefix, *text["input_ids"], eos]
    assert labels == [IGNORE_INDEX] * (1 + len(prefix)) + [*text["input_ids"], eos]
    # the answer only: the boundary after "Answer:", both pieces tokenised apart
    ids, labels = encode_question_answer(tok, q, r, train_on_prompt=False)
    p = tok("Question: What is 12 + 34?\nAnswer:", add_special_tokens=False)["input_ids"]
    c = tok(" 12 + 34 = 46", add_special_tokens=False)["input_ids"]
    assert ids == [bos_id, *p, *c, eos]
    assert labels == [IGNORE_INDEX] * (1 + len(p)) + [*c, eos]
    # generation feeds the training prompt's ids
    assert encode_prompt(tok, render_prompt("question_answer", q), template="question_answer") == [
        bos_id,
        *p,
    ]


def test_chat_labels_start_after_the_assistant_header():
    tok = tiny_tokenizer(bos=False, chat=True)
    prompt, completion = render_example("chat", "What is 1 + 2?", "3", tokenizer=tok)
    ids, labels = encode_example(tok, prompt, completion, template="chat")
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert tok.decode(labels[n_prompt:]) == "3<|im_end|>\n</s>"


def test_collator_pads_right_with_minus_100_labels():
    tok = tiny_tokenizer(bos=True, chat=False)
    tok.pad_token = tok.eos_token
    batch = causal_lm_collator(tok)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, tok.eos_token_id, tok.eos_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


# ------------------------------------------------------------------------ length, cache
def _tok(ds, tok, policy, max_len, **kw):
    return tokenize_math(ds, tok, data_key=ds._fingerprint, template="plain", system_prompt=None,
                         train_on_prompt=False, max_len=max_len, policy=policy, **kw)  # fmt: skip


def test_length_policy_counts_and_keeps_the_end(env):
    tok = tiny_tokenizer(bos=True, chat=False)
    ds = read_split_file(env["data"])
    full, counts = _tok(ds, tok, "truncate", 10_000)
    assert counts["over_length"] == counts["truncated"] == counts["dropped"] == 0
    lengths = sorted(full["length"])
    cut = lengths[len(lengths) // 2]  # about half the examples are longer
    longer = sum(n > cut for n in lengths)
    trunc, c = _tok(ds, tok, "truncate", cut)
    assert c["truncated"] == c["over_length"] == longer > 0 and c["dropped"] == 0
    assert len(trunc) == len(ds) and max(trunc["length"]) == cut
    # truncation keeps the end: the response and its EOS survive
    i = next(i for i, n in enumerate(full["length"]) if n > cut)
    assert trunc[i]["input_ids"] == full[i]["input_ids"][-cut:]
    assert trunc[i]["input_ids"][-1] == tok.eos_token_id
    dropped, c = _tok(ds, tok, "drop", cut)
    assert c["dropped"] == c["over_length"] == longer and len(dropped) == len(ds) - longer
    assert max(dropped["length"]) <= cut


def test_a_second_tokenisation_is_a_cache_hit(env, token_cache):
    tok = tiny_tokenizer(bos=True, chat=False)
    ds = read_split_file(env["data"])
    first, c1 = _tok(ds, tok, "truncate", 64)
    files = sorted(token_cache.rglob("*.arrow"))
    assert c1["cache"] == "miss" and len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again, c2 = _tok(read_split_file(env["data"]), tok, "truncate", 64)
    assert c2["cache"] == "hit" and {**c2, "cache": "miss"} == c1
    assert again["input_ids"] == first["input_ids"] and files[0].stat().st_mtime_ns == mtime
    # anything that changes the tokens is another entry
    _, c3 = _tok(ds, tok, "truncate", 32)
    _, c4 = _tok(ds.select(range(10)), tok, "truncate", 64)
    assert c3["cache"] == c4["cache"] == "miss" and len(list(token_cache.rglob("*.arrow"))) == 3


# ------------------------------------------------------------------------ the runner
def _run(env, out, family, *flags, over=()):
    """`main` with `flags` (``--x``), then FAST and `over` (``key value`` overrides; a key
    of both takes its value from `over`)."""
    given = set(over[::2])
    fast = [x for k, v in zip(FAST[::2], FAST[1::2], strict=True) if k not in given for x in (k, v)]
    argv = ["--base_model", str(env[family]), "--data_dir", str(env["data"].parents[1]),
            "--output_dir", str(out), *flags, *fast, *over]  # fmt: skip
    return runner.main(argv)


def _results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("results.json"))]


@pytest.mark.parametrize(
    "family,adapter,extra",
    [
        ("llama", "gpart", ["adapter.d", "512"]),
        ("qwen2", "lora", ["data.prompt_template", "chat", "data.train_on_prompt", "true"]),
    ],
)
def test_a_few_steps_through_main(env, tmp_path, capsys, family, adapter, extra):
    out = tmp_path / "logs"
    assert _run(env, out, family, "--adapter_type", adapter, over=extra) == 0
    (res,) = _results(out)
    assert res["task"] == "metamathqa" and res["primary_metric"] == "loss"
    assert res["test"]["loss"] > 0
    train = res["train"]
    assert train["loss"] > 0 and train["tokens"] > 0 and train["tokens_per_s"] > 0
    # Trainer takes the GPU where there is one; the record says which measure it holds
    on_gpu = torch.cuda.is_available()
    metric = "torch.cuda.max_memory_allocated" if on_gpu else "peak RSS (ru_maxrss)"
    assert train["peak_memory_metric"] == metric
    assert train["peak_memory_bytes"] > (0 if on_gpu else 50 * 2**20)  # a Python+torch process
    sel = res["selection"]
    assert sel["train_size"] == 32 and sel["size"] == 8 and sel["token_cache"] == "miss"
    assert sel["length_policy"] == "truncate" and sel["train_truncated"] == 0
    run = next(out.rglob("results.json")).parent
    saved = json.loads((run / "config.json").read_text())["config"]["data"]
    assert saved["prompt_template"] == (extra[1] if adapter == "lora" else "question_answer")
    if adapter == "gpart":
        assert res["params"]["trainable_adapter"] == 512
        targets = json.loads((run / "adapter" / "adapter_config.json").read_text())
        assert set(targets["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_resume_and_a_second_run_hits_the_token_cache(env, tmp_path, monkeypatch):
    from gpart.runners import core

    out = tmp_path / "logs"
    over = ["adapter.d", "256", "training.save_total_limit", "none"]
    real = core.evaluate_test

    def crash(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(core, "evaluate_test", crash)
    assert (
        _run(env, out, "llama", "--adapter_type", "gpart", over=over) == 1
    )  # trained, crashed before results.json
    assert not _results(out) and list(out.rglob("checkpoint-8"))
    monkeypatch.setattr(core, "evaluate_test", real)
    assert _run(env, out, "llama", "--adapter_type", "gpart", "--resume", over=over) == 0
    (res,) = _results(out)
    assert res["resumed_from"] == "checkpoint-8" and res["selection"]["token_cache"] == "hit"


def test_max_train_samples_first_or_seeded(env):
    from gpart.configs import parse_cli

    def train_rows(*args):
        cfg, _ = parse_cli(["--adapter_type", "gpart", "--data_dir",
                            str(env["data"].parents[1]), *FAST, *args], domain="math")  # fmt: skip
        single = cfg.for_task("metamathqa")
        return runner.MATH.load_splits(single, "metamathqa").train["query"]

    everything = [r["query"] for r in rows(40)]
    assert train_rows("data.max_train_samples", "5") == everything[:5]
    seeded = train_rows("data.max_train_samples", "5", "data.subset", "seeded")
    assert seeded != everything[:5] and set(seeded) <= set(everything[:32])
    assert seeded == train_rows("data.max_train_samples", "5", "data.subset", "seeded")


def test_nothing_held_out_trains_on_every_row_and_reports_no_loss(
    env, tmp_path, monkeypatch, capsys
):
    from transformers import TrainerCallback, set_seed

    from gpart.runners import core

    # A plain Trainer re-seeds when it is built: the first draw of training is the first
    # draw after set_seed(seed), whatever the set-up drew before (here theta's init)
    set_seed(5)
    expected = torch.rand(3)
    drawn = []

    class FirstDraw(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            drawn.append(torch.rand(3))

    monkeypatch.setattr(core, "build_trainer", with_callback(core.build_trainer, FirstDraw()))
    out = tmp_path / "logs"
    over = ["adapter.d", "256", "adapter.init_bound", "0.01", "data.heldout_samples", "0"]
    assert _run(env, out, "llama", "--adapter_type", "gpart", "--seed", "5", over=over) == 0
    (res,) = _results(out)
    assert res["test"] == {} and res["selection"]["source"] == "none"
    assert res["selection"]["train_size"] == 40 and res["selection"]["last_step"] == 10
    assert torch.equal(drawn[0], expected)

    from gpart.results import collect

    run = collect.load_run_result(next(out.rglob("results.json")))
    assert run.score is None and collect.with_evaluations(run) == []
    from gpart.runners.evaluate import eval_main

    capsys.readouterr()
    assert eval_main(runner.MATH, [str(run.path.parent)], prog="e", description="") == 1
    assert "data.heldout_samples 0" in capsys.readouterr().err  # nothing to re-evaluate on


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tasks", "gsm8k"], "an evaluation set (scored by generation)"),
        (["--", "data.train_file", "/nonexistent.jsonl"], "is not a file"),
        (["--", "data.prompt_template", "alpacca"], "data.prompt_template"),
        (["--", "data.heldout_samples", "-1"], "data.heldout_samples: must be >= 0"),
        (
            ["--", "data.heldout_samples", "0", "training.model_selection", "best"],
            "training.model_selection last",
        ),
        (
            ["--", "data.group_by_length", "true", "training.data_order", "reference"],
            "pass data.group_by_length false",
        ),
    ],
)
def test_bad_input_exits_2_and_leaves_nothing(env, tmp_path, capsys, args, message):
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exc:
        flags = args if args[0] != "--" else []
        _run(
            env, out, "llama", "--adapter_type", "gpart", *flags, over=args[1:] if not flags else ()
        )
    assert exc.value.code == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_the_default_task_and_size():
    from gpart.configs import parse_cli

    cfg, _ = parse_cli(["--adapter_type", "gpart"], domain="math")
    assert cfg.tasks == ["metamathqa"] and cfg.model.base_model == "Qwen/Qwen2.5-0.5B"
    assert cfg.adapter.d == 131_072 and cfg.training.model_selection == "last"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU-less case")
def test_fsdp_without_a_gpu_is_one_line_naming_ddp(env, tmp_path, capsys, monkeypatch):
    # accelerate's FSDP plugin needs an accelerator; without one it would stop inside
    # Trainer, once per process, after the data was tokenised and the model loaded.
    from gpart.runners import common

    if common.fsdp_device_available():
        pytest.skip("this machine has an accelerator FSDP can use")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what fsdp.yaml's launch sets
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exc:
        _run(env, out, "llama", "--adapter_type", "gpart")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "needs GPUs" in err and "configs/accelerate/ddp.yaml" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("fsdp", [False, True])
def test_a_bf16_checkpoint_trains_from_fp32_weights_and_pads_inside_the_vocabulary(
    env, tmp_path, monkeypatch, fsdp
):
    # Qwen2.5 / Llama-3.1 checkpoints are saved in bf16, and transformers 5 loads a
    # checkpoint's own dtype unless told otherwise: the runner asks for fp32 (bf16 only for
    # a frozen base on a GPU, never under FSDP, where theta's fp32 would not flatten with it).
    from transformers import AutoModelForCausalLM

    from gpart.configs import parse_cli

    saved = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(env["qwen2"], dtype=torch.bfloat16).save_pretrained(saved)
    for f in env["qwen2"].glob("*token*"):
        (saved / f.name).write_bytes(f.read_bytes())
    if fsdp:
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    cfg, _ = parse_cli(["--adapter_type", "gpart", "--base_model", str(saved),
                        "training.precision", "bf16"], domain="math")  # fmt: skip
    tokenizer, model = runner.MATH.load_model(cfg.for_task("metamathqa"), "metamathqa")
    if fsdp or not torch.cuda.is_available():
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    # The Qwen2 tokenizer class adds <|endoftext|> as pad past the 300-entry vocabulary of
    # this tokenizer folder; the runner pads with EOS instead (an index inside the table).
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert tokenizer.pad_token_id < model.get_input_embeddings().num_embeddings


class _Crash(Exception):
    pass


def test_same_command_same_run_and_a_killed_run_resumes_to_the_same_theta(
    env, tmp_path, monkeypatch
):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from gpart.runners import core

    # The preset's order, schedule and adapter dropout (0.05); 40 rows, nothing held out,
    # batches of 4: 10 steps an epoch, a checkpoint every 3, killed at step 12 (epoch 2)
    over = ["adapter.d", "256", "data.heldout_samples", "0", "training.epochs", "2"]
    over += ["training.eval_every", "3", "training.save_total_limit", "none"]

    def theta(out: Path) -> torch.Tensor:
        (path,) = out.rglob("adapter/adapter_model.safetensors")
        return next(v for k, v in load_file(path).items() if "gpart_theta" in k)

    assert _run(env, tmp_path / "a", "llama", "--adapter_type", "gpart", over=over) == 0
    assert _run(env, tmp_path / "b", "llama", "--adapter_type", "gpart", over=over) == 0
    assert torch.equal(theta(tmp_path / "a"), theta(tmp_path / "b"))
    assert not torch.equal(theta(tmp_path / "a"), torch.zeros_like(theta(tmp_path / "a")))

    build = core.build_trainer

    class CrashInSecondEpoch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 12:
                raise _Crash("killed")

    monkeypatch.setattr(core, "build_trainer", with_callback(build, CrashInSecondEpoch()))
    cut = tmp_path / "cut"
    assert _run(env, cut, "llama", "--adapter_type", "gpart", over=over) == 1
    monkeypatch.setattr(core, "build_trainer", build)
    assert _run(env, cut, "llama", "--adapter_type", "gpart", "--resume", over=over) == 0
    (res,) = _results(cut)
    assert res["resumed_from"] == "checkpoint-12"
    assert torch.equal(theta(cut), theta(tmp_path / "a"))

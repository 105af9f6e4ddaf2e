"""Greedy generation for GSM8K / MATH: merged weights, length-sorted left-padded batches,
stops at EOS and at the prompt template's next turn; a vLLM path with the same settings.

Why each choice:

* **Merged adapter.** `merge_adapter` folds the trained update into the base weights
  (`merge_and_unload`) once, so decoding runs the plain model: one matmul per layer and no
  adapter term per token.
* **Length-sorted batches.** Prompts are sorted by token count (longest first, so an
  out-of-memory shows at once) before batching, so a batch pads little; completions are
  put back in the original order.
* **Left padding.** A decoder continues from the last position of each row; with left
  padding every row's last prompt token is the batch's last column. The attention mask
  marks the padding, and transformers derives positions from it, so a padded row decodes
  as it would alone (`tests/test_math_eval_runner.py` checks batch 16 against batch 1).
* **Stops.** EOS ends a completion; so does the template's next-turn marker (``Question:``
  of ``plain``, ``### Instruction`` of ``alpaca``) that a model trained on one turn tends to
  write next. transformers' ``stop_strings`` stops there (matching across token
  boundaries), and `cut_at_stop` removes the marker and what follows from the text.

Only torch, transformers and accelerate are imported, lazily where they are heavy; the
package `gpart.evaluation` itself does not import this module (it stays torch-free).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpart.configs import ConfigError
from gpart.data.math import TEMPLATE_NAMES, encode_prompt

# The next turn each template would begin; the chat template's end of turn is its EOS.
STOP_MARKERS: dict[str, tuple[str, ...]] = {
    "plain": ("Question:",),
    "alpaca": ("### Instruction",),
    "chat": (),
    # the GPart authors' stop strings for this prompt, "Question" and "[Question" (their
    # eval_math.py:345); the second contains the first
    "question_answer": ("Question",),
}
# The `vllm` extra (pyproject.toml) is locked beside the dev environment, not in it: vLLM
# pins its own torch, so the extra conflicts with the dev group and replaces it.
VLLM_SYNC = "uv sync --locked --extra vllm --no-dev"
VLLM_INSTALL = (
    "backend vllm needs the vllm package, which the dev environment leaves out (vLLM pins "
    f"its own torch): on a Linux CUDA machine, `{VLLM_SYNC}` installs it in the dev tools' "
    "place (then `uv run --extra vllm --no-dev ...`), or use the override `backend hf`"
)


def stop_markers(template: str) -> tuple[str, ...]:
    """The next-turn markers of `template` (see `STOP_MARKERS`)."""
    if template not in STOP_MARKERS:
        raise ConfigError(
            f"--prompt_template {template!r}: unknown; choices: {', '.join(TEMPLATE_NAMES)}"
        )
    return STOP_MARKERS[template]


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop marker (all of it when none occurs)."""
    end = len(text)
    for stop in stops:
        at = text.find(stop)
        if at != -1:
            end = min(end, at)
    return text[:end]


def merge_adapter(model: Any) -> Any:
    """The model with its peft adapter merged into the base weights (`merge_and_unload`);
    a model without one (a base model, or bitfit / full weights loaded in place) as is."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id that ends a completion: the model's generation config (Llama 3 lists
    several) and the tokenizer's EOS."""
    ids: list[int] = []
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        for i in value if isinstance(value, list | tuple) else [value]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ConfigError("the tokenizer and the model name no EOS token: generation cannot stop")
    return ids


@dataclass
class Generations:
    """Completions in the prompts' order, the tokens each generated, and the wall time."""

    completions: list[str]
    tokens: list[int]
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return sum(self.tokens) / self.seconds if self.seconds > 0 else 0.0


def length_order(lengths: Sequence[int], sort: bool = True) -> list[int]:
    """Positions by decreasing length (ties keep their order); as given when not `sort`."""
    order = list(range(len(lengths)))
    return sorted(order, key=lambda i: -lengths[i]) if sort else order


def generate_hf(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    template: str,
    max_new_tokens: int,
    batch_size: int,
    sort: bool = True,
    progress: bool = True,
    desc: str = "generating",
) -> Generations:
    """Greedy completions of `prompts` with transformers' `generate`.

    Args:
        model: a causal LM (adapter merged: `merge_adapter`), on its device, in eval mode.
        tokenizer: its tokenizer, with a pad token.
        prompts: rendered prompts (`gpart.data.math.render_prompt`).
        template: the prompt template: how prompts are tokenised (as in training) and
            which next-turn marker stops a completion.
        max_new_tokens: the most tokens a completion may have.
        batch_size: prompts per `generate` call.
        sort: sort prompts by length first (see the module docstring).
        progress: show a tqdm progress bar (prompts done).
        desc: the bar's label.

    Returns:
        `Generations`: the decoded completions (special tokens dropped, cut at the stop
        marker) and each one's generated token count (EOS included, padding not).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    if batch_size < 1 or max_new_tokens < 1:
        raise ConfigError("--batch_size and --max_new_tokens must be 1 or more")
    stops = stop_markers(template)
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ConfigError("the tokenizer has no pad token; set one (pad = EOS) first")
    ends = eos_ids(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad,
        eos_token_id=ends,
        stop_strings=list(stops) or None,
    )
    encoded = [encode_prompt(tokenizer, p, template=template) for p in prompts]
    order = length_order([len(ids) for ids in encoded], sort)
    completions: list[str] = [""] * len(prompts)
    tokens: list[int] = [0] * len(prompts)
    device = next(model.parameters()).device
    start = time.perf_counter()
    with tqdm(total=len(prompts), desc=desc, disable=not progress) as bar:
        for lo in range(0, len(order), batch_size):
            batch = order[lo : lo + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(encoded[i])
                ids[row, width - n :] = torch.tensor(encoded[i], dtype=torch.long)
                mask[row, width - n :] = 1
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    generation_config=config,
                    tokenizer=tokenizer if stops else None,
                )
            for row, i in enumerate(batch):
                new = out[row, width:].tolist()
                stop = next((k for k, t in enumerate(new) if t in ends), None)
                if stop is not None:
                    new = new[: stop + 1]  # the EOS counts as generated
                elif pad not in ends:
                    new = [t for t in new if t != pad]  # rows finished by a stop string
                tokens[i] = len(new)
                text = tokenizer.decode(new, skip_special_tokens=True)
                completions[i] = cut_at_stop(text, stops)
            bar.update(len(batch))
    return Generations(completions, tokens, time.perf_counter() - start)


def process_state() -> Any:
    """accelerate's `PartialState` of this process: one of ``accelerate launch`` /
    ``torchrun``'s processes (gloo on a machine without CUDA, so CPU runs shard too), or
    the only one."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


# One generated prompt: (its position in the prompts, completion, generated tokens).
Row = tuple[int, str, int]


def generate_chunked(
    generate: Callable[[list[str]], Generations],
    prompts: Sequence[str],
    positions: Sequence[int],
    *,
    chunk_size: int,
    done: Mapping[int, tuple[str, int, float]] | None = None,
    on_chunk: Callable[[list[Row], float], None] | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> tuple[list[Row], float]:
    """Generate `positions` (of `prompts`, in that order) chunk by chunk, skipping chunks
    already `done`, and hand each new chunk to `on_chunk` as soon as it is generated.

    The chunks are consecutive slices of `positions` of `chunk_size`; with `positions`
    sorted by length and `chunk_size` a multiple of the batch size, the batches are those
    of one uninterrupted call, so a resumed evaluation generates what an uninterrupted one
    would (`generate` is called with the chunk's prompts in order, unsorted).

    Args:
        generate: generates a list of prompts in the order given.
        prompts: every prompt.
        positions: which to generate, in the order to generate them.
        chunk_size: prompts per chunk.
        done: completion, token count and seconds of each position generated before (a
            resumed run); a chunk is skipped when all of it is there.
        on_chunk: called with each new chunk's rows and its seconds (to save it).
        progress: show a tqdm bar (prompts done).
        desc: the bar's label.

    Returns:
        Every row of `positions` (old and new) and the seconds they took (the old ones'
        as `done` says).
    """
    from tqdm.auto import tqdm

    done = done or {}
    rows: list[Row] = []
    seconds = 0.0
    chunks = [list(positions[k : k + chunk_size]) for k in range(0, len(positions), chunk_size)]
    with tqdm(total=len(positions), desc=desc, disable=not progress) as bar:
        for chunk in chunks:
            if all(i in done for i in chunk):
                rows += [(i, done[i][0], done[i][1]) for i in chunk]
                seconds += sum(done[i][2] for i in chunk)
                bar.update(len(chunk))
                continue
            got = generate([prompts[i] for i in chunk])
            new = [(i, c, t) for i, c, t in zip(chunk, got.completions, got.tokens, strict=True)]
            if on_chunk is not None:
                on_chunk(new, got.seconds)
            rows += new
            seconds += got.seconds
            bar.update(len(chunk))
    return rows, seconds


def generate_sharded(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    chunk_size: int | None = None,
    done: Mapping[int, tuple[str, int, float]] | None = None,
    on_chunk: Callable[[list[Row], float], None] | None = None,
    **kwargs: Any,
) -> Generations | None:
    """`generate_hf` over the processes of an ``accelerate launch`` (one shard each), in
    chunks (`generate_chunked`) when `chunk_size` is given.

    Every process generates its contiguous slice of the prompts (`split_between_processes`),
    sorted by length as `generate_hf` sorts, chunk by chunk, each new chunk handed to its
    own `on_chunk`; the slices are gathered (`gather_object`) in process order, so the
    main process gets every completion in the prompts' order. Without ``accelerate
    launch`` there is one process and one slice.

    Args:
        chunk_size: prompts per chunk (a multiple of ``batch_size``); None: one chunk.
        done: see `generate_chunked` (positions in `prompts`).
        on_chunk: see `generate_chunked`; called on the process that generated the chunk.
        **kwargs: `generate_hf`'s (``template``, ``max_new_tokens``, ``batch_size``, ...).

    Returns:
        On the main process, the `Generations` of all prompts (``seconds``: the slowest
        process's, a resumed run's earlier chunks included); None on the others.
    """
    from accelerate.utils import gather_object

    state = process_state()
    indices = list(range(len(prompts)))
    sort = kwargs.pop("sort", True)
    progress = kwargs.pop("progress", state.is_main_process)
    desc = kwargs.pop("desc", "generating")
    with state.split_between_processes(indices) as mine:
        mine = list(mine)
        lengths = [len(encode_prompt(tokenizer, prompts[i], template=kwargs["template"]))
                   for i in mine]  # fmt: skip
        order = [mine[k] for k in length_order(lengths, sort)]

        def generate(chunk: list[str]) -> Generations:
            return generate_hf(model, tokenizer, chunk, sort=False, progress=False, **kwargs)

        rows, seconds = generate_chunked(
            generate, prompts, order, chunk_size=chunk_size or max(len(order), 1), done=done,
            on_chunk=on_chunk, progress=progress, desc=desc,
        )  # fmt: skip
        rows = [(i, c, t, seconds) for i, c, t in rows]
    gathered = gather_object(rows) if state.num_processes > 1 else rows
    if not state.is_main_process:
        return None
    gathered = sorted(gathered, key=lambda r: r[0])
    if [r[0] for r in gathered] != indices:
        raise RuntimeError("sharded generation lost or duplicated prompts")
    return Generations(
        [r[1] for r in gathered],
        [r[2] for r in gathered],
        max((r[3] for r in gathered), default=seconds),
    )


def require_vllm() -> Any:
    """The vllm module, or a `ConfigError` saying how to install it, or how to put back
    the torch it was built for: a plain `uv run` syncs the dev group and its torch under
    an installed vllm, which then imports but fails in its first CUDA extension (vllm
    0.33 over torch 2.15: torchaudio's CUDA 13.0 against torch's 13.2)."""
    try:
        import vllm
    except ModuleNotFoundError as e:
        if e.name != "vllm":
            raise ConfigError(_vllm_broken(str(e))) from None
        raise ConfigError(VLLM_INSTALL) from None
    except ImportError as e:
        raise ConfigError(_vllm_broken(str(e))) from None
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    torch = version("torch")
    for line in requires("vllm") or ():
        req = Requirement(line)
        if req.name == "torch" and (req.marker is None or req.marker.evaluate({"extra": ""})):
            if not req.specifier.contains(torch, prereleases=True):
                raise ConfigError(
                    _vllm_broken(
                        f"vllm {version('vllm')} needs torch{req.specifier}, "
                        f"and torch {torch} is installed"
                    )
                )
    return vllm


def _vllm_broken(reason: str) -> str:
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
    return (
        f"vllm does not work here ({first}): `{VLLM_SYNC}` puts back the environment it was "
        "locked with (a plain `uv run` syncs the dev group's torch; use "
        "`uv run --extra vllm --no-dev`)"
    )


def generate_vllm(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    template: str,
    max_new_tokens: int,
    dtype: str = "bfloat16",
    chunk_size: int | None = None,
    done: Mapping[int, tuple[str, int, float]] | None = None,
    on_chunk: Callable[[list[Row], float], None] | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> Generations:
    """Greedy completions with vLLM: the merged model is saved to a temporary directory
    and served from there, fed the same token ids as `generate_hf` (tokenised as in
    training), with the same stop markers and token limit. vLLM batches by itself; the
    prompts go to it in chunks of `chunk_size` in the dataset's order (`generate_chunked`:
    `done` and `on_chunk` as there)."""
    vllm = require_vllm()
    stops = stop_markers(template)
    encoded = [encode_prompt(tokenizer, p, template=template) for p in prompts]
    with tempfile.TemporaryDirectory(prefix="gpart-vllm-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        llm = vllm.LLM(model=tmp, tokenizer=tmp, dtype=dtype, seed=0)
        params = vllm.SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            stop=list(stops) or None,
            stop_token_ids=eos_ids(model, tokenizer),
        )
        ids = {p: e for p, e in zip(prompts, encoded, strict=True)}

        def generate(chunk: list[str]) -> Generations:
            start = time.perf_counter()
            outs = llm.generate([{"prompt_token_ids": ids[p]} for p in chunk], params)
            return Generations(
                [cut_at_stop(o.outputs[0].text, stops) for o in outs],
                [len(o.outputs[0].token_ids) for o in outs],
                time.perf_counter() - start,
            )

        rows, seconds = generate_chunked(
            generate, prompts, range(len(prompts)), chunk_size=chunk_size or max(len(prompts), 1),
            done=done, on_chunk=on_chunk, progress=progress, desc=desc,
        )  # fmt: skip
    rows.sort(key=lambda r: r[0])
    return Generations([r[1] for r in rows], [r[2] for r in rows], seconds)


__all__ = [
    "STOP_MARKERS",
    "Generations",
    "cut_at_stop",
    "eos_ids",
    "generate_chunked",
    "generate_hf",
    "generate_sharded",
    "generate_vllm",
    "length_order",
    "merge_adapter",
    "process_state",
    "require_vllm",
    "stop_markers",
]

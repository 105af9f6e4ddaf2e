"""MetaMathQA for causal-LM fine-tuning: loading, prompt templates, tokenisation with the
loss on the response, the length policy, a token cache, and the padding collator.

Data comes from the hub (``meta-math/MetaMathQA``, columns ``query`` / ``response``) or
from a local json / jsonl / parquet file with the same columns (``data.train_file``, or
``<data_dir>/metamathqa/train.{jsonl,json,parquet}``), read by `gpart.data.loading`.

Roles (`Splits`): an optional held-out slice (``data.heldout_samples`` rows, the *last* rows
of the data, so "the first N rows" of Uni-LoRA's 100K protocol stay the first N rows) is the
reported split: the training run reports its loss there, and nothing else -- accuracy on
GSM8K / MATH comes from generation, a separate evaluation. With 0 rows held out (the
presets, as the paper's authors train) there is no reported split. Training rows are the
rest: all of them, the first ``data.max_train_samples`` (``data.subset first``) or a seeded
sample of that many (``data.subset seeded``).

Tokenisation runs once per (data, tokenizer, template, length settings): `tokenize_math`
writes an Arrow file under the token cache (`token_cache_dir`) named by a fingerprint of
all of them, with a small JSON of counts beside it, so a second run on 395K rows starts at
once and still reports how many examples the length policy touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpart.data.loading import (
    DataError,
    Splits,
    find_split_file,
    load_hub_dataset,
    read_split_file,
    require_columns,
)

if TYPE_CHECKING:
    from datasets import Dataset

QUERY, RESPONSE = "query", "response"
TASK_DIR = "metamathqa"
IGNORE_INDEX = -100  # what torch's cross-entropy (and transformers' LM loss) skips
# Bump when the token layout produced by `tokenize_math` changes: old cache files go stale.
TOKENIZE_VERSION = 1
TOKENS_FILE, COUNTS_FILE = "tokens.arrow", "counts.json"

# ------------------------------------------------------------------------ templates
# The exact prompt strings. The response follows the prompt directly, then the EOS token.
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
)
TEMPLATES: dict[str, str] = {
    # "Question: {query}\nAnswer: " -- a minimal template for base models; with
    # data.system_prompt the system text and a blank line come first.
    "plain": "Question: {query}\nAnswer: ",
    # The Alpaca no-input prompt MetaMath trains with (and Uni-LoRA after it).
    "alpaca": ALPACA_PREAMBLE + "### Instruction:\n{query}\n\n### Response:\n",
    # "chat": the tokenizer's own chat template (a user turn, then the assistant turn);
    # data.system_prompt becomes a system turn. No fixed string: the tokenizer decides.
    "chat": "",
    # The GPart authors' MetaMathQA text, "Question: {query}\nAnswer: {response}" with both
    # stripped (their finetune_metamath.py:35-37), in their token layout
    # (`encode_question_answer`); this string is the generation prompt, as their
    # eval_math.py:177-179 builds it.
    "question_answer": "Question: {query}\nAnswer:",
}
TEMPLATE_NAMES = tuple(TEMPLATES)


def render_prompt(
    template: str, query: str, *, system_prompt: str | None = None, tokenizer: Any = None
) -> str:
    """The prompt text of one example (everything before the response).

    Raises:
        DataError: unknown template, or ``chat`` with a tokenizer that has no chat template.
    """
    if template not in TEMPLATES:
        raise DataError(
            f"data.prompt_template: unknown template {template!r}; choices: "
            f"{', '.join(TEMPLATE_NAMES)}"
        )
    if template == "chat":
        return _chat(tokenizer, query, None, system_prompt)
    if template == "question_answer":
        query = query.strip()
    text = TEMPLATES[template].format(query=query)
    return f"{system_prompt}\n\n{text}" if system_prompt else text


def render_example(
    template: str,
    query: str,
    response: str,
    *,
    system_prompt: str | None = None,
    tokenizer: Any = None,
) -> tuple[str, str]:
    """``(prompt, completion)`` texts; their concatenation is the training text (EOS aside).

    For ``chat`` the completion is what the chat template renders after the prompt (the
    response and the template's own end-of-turn markers).
    """
    prompt = render_prompt(template, query, system_prompt=system_prompt, tokenizer=tokenizer)
    if template == "question_answer":
        return prompt, f" {response.strip()}"
    if template != "chat":
        return prompt, response
    full = _chat(tokenizer, query, response, system_prompt)
    if not full.startswith(prompt):
        raise DataError(
            "data.prompt_template chat: the tokenizer's chat template does not render the "
            "conversation as prompt + response; use 'plain' or 'alpaca'"
        )
    return prompt, full[len(prompt) :]


def _chat(tokenizer: Any, query: str, response: str | None, system_prompt: str | None) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "data.prompt_template chat: the tokenizer has no chat template; use 'plain' or "
            "'alpaca' (or a model that ships one)"
        )
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": query})
    if response is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": response})
    return tokenizer.apply_chat_template(messages, tokenize=False)


# ------------------------------------------------------------------------ tokens
def encode_prompt(tokenizer: Any, prompt: str, *, template: str) -> list[int]:
    """The token ids of a prompt, exactly as training saw them before the response.

    The tokenizer adds its BOS as it would for any text (``add_special_tokens``), except
    for ``chat``, whose template writes its own special tokens. An EOS that
    ``add_special_tokens`` appends (some tokenizers do) is stripped: the prompt must not
    end the sequence. Generation (`gpart.evaluation.generate`) feeds the same ids.
    """
    if template == "question_answer":  # the BOS by id, as `encode_question_answer` puts it
        return [*_bos(tokenizer), *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    special = template != "chat"
    ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    eos = tokenizer.eos_token_id
    if special and eos is not None and ids and ids[-1] == eos:
        ids = ids[:-1]
    return ids


def encode_example(
    tokenizer: Any,
    prompt: str,
    completion: str,
    *,
    template: str,
    train_on_prompt: bool = False,
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one example, untruncated.

    Prompt and completion are tokenised apart, so the boundary is exact: the prompt's
    labels are `IGNORE_INDEX` (unless `train_on_prompt`), the completion's are its ids.
    The tokenizer adds its BOS as it would for any text (``add_special_tokens``); a chat
    template writes its own special tokens. EOS ends every example, as the tokenizer's
    models are trained to stop.
    """
    p = encode_prompt(tokenizer, prompt, template=template)
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not c or c[-1] != eos):
        c = [*c, eos]
    ids = [*p, *c]
    labels = [*(p if train_on_prompt else [IGNORE_INDEX] * len(p)), *c]
    return ids, labels


def _bos(tokenizer: Any) -> list[int]:
    bos = tokenizer.bos_token_id
    return [] if bos is None else [bos]


def encode_question_answer(
    tokenizer: Any,
    query: str,
    response: str,
    *,
    system_prompt: str | None = None,
    train_on_prompt: bool = True,
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one example in the GPart authors' layout, untruncated.

    Their ``tokenize_example`` (finetune_metamath.py:40-55): the tokenizer's BOS by id
    whenever it has one (whether or not its own encoding would add it), the system prompt
    tokenised alone, the text ``Question: {query}\nAnswer: {response}`` tokenised in one
    piece, then EOS. The loss is on everything after the BOS and the system prompt: the
    question too. ``train_on_prompt=False`` puts it on the answer and EOS only; the text is
    then tokenised in two pieces, ``Question: {query}\nAnswer:`` and `` {response}``, so the
    boundary is exact. The system prompt is followed by a blank line, as in every template.
    """
    bos = _bos(tokenizer)
    prefix = f"{system_prompt}\n\n" if system_prompt else ""
    head = [*bos, *(tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else [])]
    prompt, completion = render_example("question_answer", query, response)
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    if train_on_prompt:
        text = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        return [*head, *text, *eos], [*[IGNORE_INDEX] * len(head), *text, *eos]
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = [*tokenizer(completion, add_special_tokens=False)["input_ids"], *eos]
    return [*head, *p, *c], [*[IGNORE_INDEX] * (len(head) + len(p)), *c]


def apply_length_policy(
    ids: list[int], labels: list[int], max_len: int, policy: str
) -> tuple[list[int], list[int]] | None:
    """Fit one example into `max_len` tokens: None drops it, ``truncate`` keeps the end.

    Truncating the front keeps the response (the supervised part) and its EOS; the prompt's
    start (and BOS) goes first.
    """
    if len(ids) <= max_len:
        return ids, labels
    if policy == "drop":
        return None
    return ids[-max_len:], labels[-max_len:]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of what decides the tokens: the vocabulary, special tokens, chat template."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = {
        k: str(getattr(tokenizer, k, None))
        for k in ("bos_token", "eos_token", "pad_token", "add_bos_token", "add_eos_token")
    }
    h.update(json.dumps(specials, sort_keys=True).encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    # the backend's pre-tokenizer / normaliser (fast tokenizers): same vocab, other tokens
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    return h.hexdigest()[:16]


def token_cache_dir() -> Path:
    """Where tokenised datasets are cached: ``$GPART_CACHE_DIR/tokenized``, else
    ``$XDG_CACHE_HOME/gpart/tokenized`` (``~/.cache/gpart/tokenized``)."""
    root = os.environ.get("GPART_CACHE_DIR")
    if root:
        return Path(root) / "tokenized"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "gpart" / "tokenized"


def tokenize_math(
    dataset: Dataset,
    tokenizer: Any,
    *,
    data_key: str,
    template: str,
    system_prompt: str | None,
    train_on_prompt: bool,
    max_len: int,
    policy: str,
    num_proc: int | None = None,
    cache_dir: Path | None = None,
) -> tuple[Dataset, dict[str, Any]]:
    """Tokenise `dataset` (``query`` / ``response``) into ``input_ids``, ``labels``, ``length``.

    Args:
        dataset: The raw rows.
        tokenizer: The model's tokenizer.
        data_key: Identifies the rows (source fingerprint and selection); part of the cache
            key together with the tokenizer and every argument below.
        template, system_prompt, train_on_prompt: see `render_example` / `encode_example`.
        max_len: ``training.max_seq_length``.
        policy: ``truncate`` (keep the end) or ``drop`` examples longer than `max_len`.
        num_proc: `datasets.Dataset.map` processes (None: one).
        cache_dir: Overrides `token_cache_dir` (None: that).

    Returns:
        The tokenised dataset (memory-mapped from the cache file) and its counts:
        ``examples`` (in), ``kept``, ``over_length`` (longer than `max_len`), ``truncated``,
        ``dropped``, ``tokens`` (after the policy) and ``cache`` (``hit`` or ``miss``).
        Besides ``input_ids`` / ``labels``, rows keep ``length`` (tokens, for length-grouped
        batches) and ``full_length`` (before the policy).
    """
    key = json.dumps(
        {
            "v": TOKENIZE_VERSION,
            "data": data_key,
            "rows": len(dataset),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "template": template,
            "system_prompt": system_prompt,
            "train_on_prompt": train_on_prompt,
            "max_len": max_len,
            "policy": policy,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = (cache_dir or token_cache_dir()) / digest
    if (root / COUNTS_FILE).is_file():
        try:
            counts = json.loads((root / COUNTS_FILE).read_text())
            return _load_token_files(root), {**counts, "cache": "hit"}
        except (OSError, ValueError):
            pass  # a damaged entry: rebuild it below

    def encode(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": [], "full_length": []}
        for q, r in zip(batch[QUERY], batch[RESPONSE], strict=True):
            if template == "question_answer":
                ids, labels = encode_question_answer(
                    tokenizer, q, r, system_prompt=system_prompt, train_on_prompt=train_on_prompt
                )
            else:
                prompt, completion = render_example(
                    template, q, r, system_prompt=system_prompt, tokenizer=tokenizer
                )
                ids, labels = encode_example(
                    tokenizer,
                    prompt,
                    completion,
                    template=template,
                    train_on_prompt=train_on_prompt,
                )
            fitted = apply_length_policy(ids, labels, max_len, policy)
            if fitted is None:
                continue  # dropped: counted as the difference in rows
            out["input_ids"].append(fitted[0])
            out["labels"].append(fitted[1])
            out["length"].append(len(fitted[0]))  # what length-grouped batching sorts by
            out["full_length"].append(len(ids))
        return out

    # Written straight into a private folder, renamed into place when complete: a crash
    # leaves no half-written entry, and concurrent runs (DDP ranks) never read one.
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    procs = num_proc if num_proc and num_proc > 1 else None
    tokenised = dataset.map(
        encode,
        batched=True,
        remove_columns=dataset.column_names,
        num_proc=procs,
        cache_file_name=str(tmp / TOKENS_FILE),
        load_from_cache_file=False,
        desc="tokenising",
    )
    full = tokenised.data.column("full_length").to_numpy()
    kept, over = len(tokenised), int((full > max_len).sum())
    counts = {
        "examples": len(dataset),
        "kept": kept,
        "over_length": over + (len(dataset) - kept),
        "truncated": over,
        "dropped": len(dataset) - kept,
        "tokens": int(tokenised.data.column("length").to_numpy().sum()),
    }
    (tmp / COUNTS_FILE).write_text(json.dumps(counts))
    del tokenised
    if root.exists():  # another process finished first with the same tokens
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(root)
    return _load_token_files(root), {**counts, "cache": "miss"}


def _load_token_files(root: Path) -> Dataset:
    """The memory-mapped tokens of a cache entry (one file, or one per `map` process)."""
    from datasets import Dataset, concatenate_datasets

    files = sorted(root.glob("*.arrow"))
    if not files:
        raise OSError(f"{root}: no token files")
    parts = [Dataset.from_file(str(f)) for f in files]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


# ------------------------------------------------------------------------ batches
def causal_lm_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> Callable:
    """Right-pad a batch to its longest example: ``input_ids`` with the pad id,
    ``attention_mask`` 0 and ``labels`` `IGNORE_INDEX` on the padding (dynamic padding)."""
    import torch

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token; set one (e.g. pad = eos) first")

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if pad_to_multiple_of:
            longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
        ids, mask, labels = [], [], []
        for f in features:
            n = len(f["input_ids"])
            pad = longest - n
            ids.append(list(f["input_ids"]) + [pad_id] * pad)
            mask.append([1] * n + [0] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }

    return collate


# ------------------------------------------------------------------------ raw data
def train_file(train_file: str | None, data_dir: str | None) -> Path | None:
    """The local file to read, or None for the hub.

    Raises:
        DataError: the file is missing, or ``<data_dir>/metamathqa/`` holds none or several.
    """
    if train_file:
        path = Path(train_file)
        if not path.is_file():
            raise DataError(f"data.train_file: {train_file!r} is not a file")
        return path
    if data_dir is None:
        return None
    return find_split_file(Path(data_dir) / TASK_DIR, "train")


def load_metamath_raw(source: str, path: Path | None) -> Dataset:
    """Every row of MetaMathQA: the local file `path`, or the hub dataset `source`."""
    if path is not None:
        ds = read_split_file(path, split="train", string_columns=(QUERY, RESPONSE))
        where = str(path)
    else:
        ds = load_hub_dataset(
            source,
            split="train",
            offline_hint="give a local file with data.train_file PATH or --data_dir "
            "(<data_dir>/metamathqa/train.jsonl)",
        )
        where = source
    require_columns(ds, (QUERY, RESPONSE), where=where)
    return ds.select_columns([QUERY, RESPONSE])


def cut_splits(
    ds: Dataset,
    task: Any,
    *,
    heldout: int,
    max_train_samples: int | None,
    subset: str,
    seed: int,
    model_selection: str,
) -> Splits:
    """The held-out slice (the last `heldout` rows) and the training rows (see the module
    docstring). With ``model_selection best`` the held-out slice also selects the model.
    With ``heldout`` 0 every row is a training row and there is no reported split
    (``test`` is empty; ``info["source"]`` is ``"none"``).

    Raises:
        DataError: too few rows for the held-out slice plus at least one training row, or
            ``model_selection best`` without a held-out slice.
    """
    n = len(ds)
    if heldout < 0 or heldout >= n:
        raise DataError(
            f"data.heldout_samples {heldout}: needs 0 or more and fewer than the data's {n} rows"
        )
    if heldout == 0 and model_selection == "best":
        raise DataError(
            "data.heldout_samples 0: training.model_selection best selects on the held-out "
            "rows; hold some out or pass training.model_selection last"
        )
    pool = ds.select(range(n - heldout))
    held = ds.select(range(n - heldout, n)) if heldout else None
    info: dict[str, Any] = {
        "strategy": model_selection,
        "source": "heldout_tail" if heldout else "none",
        "size": heldout,
        "subset": subset,
    }
    if max_train_samples is not None and max_train_samples < len(pool):
        if subset == "seeded":
            pool = pool.shuffle(seed=seed).select(range(max_train_samples))
            info["subset_seed"] = seed
        else:
            pool = pool.select(range(max_train_samples))
    info["train_size"] = len(pool)
    return Splits(
        task=task,
        train=pool,
        selection=held if model_selection == "best" else None,
        test={"heldout": held} if heldout else {},
        info=info,
    )


__all__ = [
    "IGNORE_INDEX",
    "TEMPLATES",
    "TEMPLATE_NAMES",
    "apply_length_policy",
    "causal_lm_collator",
    "cut_splits",
    "encode_example",
    "encode_prompt",
    "encode_question_answer",
    "load_metamath_raw",
    "render_example",
    "render_prompt",
    "tokenize_math",
    "tokenizer_fingerprint",
    "train_file",
]

"""Training examples from records: prompt and response tokenized apart with loss on the response only, packing
several examples into one row kept apart by restarting position ids, the collators, and the dry run that shows one
example with its masked and trained spans."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pipelines.finetune.config import IGNORE, FinetuneConfig
from workbench.core.errors import ConfigError, InputError
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, RESPONSE_KEY, build_prompt, has_chat_template
from workbench.core.records import Record


@dataclass
class Encoded:
    record_id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def uses_chat_template(tokenizer, config: FinetuneConfig) -> bool:
    return config.chat_template == "auto" and has_chat_template(tokenizer)


def prompt_text(tokenizer, record: Record, config: FinetuneConfig) -> str:
    """The prompt part of a training example (`workbench.core.prompts.build_prompt`, shared with evaluation)."""
    return build_prompt(record.instruction, record.context, ADVISOR_SYSTEM_PROMPT if config.system_prompt else None,
                        tokenizer, config.chat_template == "auto")


def encode(tokenizer, record: Record, config: FinetuneConfig) -> Encoded:
    """Prompt and response tokenized apart (so the boundary is exact), EOS appended; labels only on the response."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token: the model could never learn to stop")
    chat = uses_chat_template(tokenizer, config)
    prompt_ids = tokenizer(prompt_text(tokenizer, record, config), add_special_tokens=not chat)["input_ids"]
    response_ids = tokenizer(record.response.strip(), add_special_tokens=False)["input_ids"]
    response_ids = [*response_ids, tokenizer.eos_token_id]
    return Encoded(record.id, [*prompt_ids, *response_ids], [IGNORE] * len(prompt_ids) + response_ids)


@dataclass
class Prepared:
    train: list[Encoded]
    eval: list[Encoded]
    too_long: list[tuple[Record, int]] = field(default_factory=list)  # (record, tokens): dropped, reported
    no_response: list[Record] = field(default_factory=list)


def prepare(records: list[Record], tokenizer, config: FinetuneConfig) -> Prepared:
    """Encode, drop (and report) what cannot be trained whole, split off the eval set by the seed."""
    kept, too_long, empty = [], [], []
    for record in records:
        if not record.response.strip():
            empty.append(record)
            continue
        encoded = encode(tokenizer, record, config)
        if len(encoded.input_ids) > config.max_length:
            too_long.append((record, len(encoded.input_ids)))
        else:
            kept.append(encoded)
    if not kept:
        raise InputError(f"no trainable examples: {len(too_long)} longer than --max-length {config.max_length}, "
                         f"{len(empty)} without a response")
    order = list(range(len(kept)))
    random.Random(config.seed).shuffle(order)
    n_eval = int(round(len(kept) * config.eval_split)) if len(kept) > 1 else 0
    eval_ids = set(order[:n_eval])
    return Prepared([e for i, e in enumerate(kept) if i not in eval_ids],
                    [e for i, e in enumerate(kept) if i in eval_ids], too_long, empty)


def pack(examples: list[Encoded], max_length: int, seed: int) -> list[dict[str, list[int]]]:
    """Examples into rows of at most max_length tokens (first fit over a seeded shuffle), position ids
    restarting at each example: the attention mask is built from those restarts, so examples stay apart."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    rows: list[dict[str, list[int]]] = []
    for example in order:
        n = len(example.input_ids)
        row = next((r for r in rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"] += example.input_ids
        # The first token of each example predicts nothing across the boundary (it is a prompt token anyway).
        row["labels"] += [IGNORE, *example.labels[1:]]
        row["position_ids"] += list(range(n))
    return rows


def unpacked(examples: list[Encoded]) -> list[dict[str, list[int]]]:
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


class PackedCollator:
    """Packed rows as a batch. A row shorter than the longest is filled with pad tokens that form a segment of
    their own (positions restart at 0, no labels), so nothing attends to them and they attend to nothing real."""

    def __init__(self, pad_id: int = 0):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        fill = [longest - len(r["input_ids"]) for r in rows]
        batch = {"input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * n for r, n in zip(rows, fill)]),
                 "labels": torch.tensor([r["labels"] + [IGNORE] * n for r, n in zip(rows, fill)]),
                 "position_ids": torch.tensor([r["position_ids"] + list(range(n)) for r, n in zip(rows, fill)])}
        # transformers reads restarting position ids as separate sequences only without a KV cache.
        return {**batch, "use_cache": False}


class PaddedCollator:
    """The standard recipe: pad to the longest example of the batch (right), labels -100 on padding."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        pad = [longest - len(r["input_ids"]) for r in rows]
        return {"input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * p for r, p in zip(rows, pad)]),
                "labels": torch.tensor([r["labels"] + [IGNORE] * p for r, p in zip(rows, pad)]),
                "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * p for r, p in zip(rows, pad)])}


@dataclass
class DryRun:
    examples: int
    train: int
    eval: int
    too_long: list[tuple[str, int]]
    no_response: int
    response_key_missing: list[str]  # record ids whose prompt lacks the response key (section format)
    eos_trained: bool
    masked_text: str  # the first example's prompt (no loss)
    trained_text: str  # ... and its response (loss), EOS included
    masked_tokens: int
    trained_tokens: int
    chat_template: bool
    tokens: int  # trained tokens over the training set, one epoch


def dry_run(records: list[Record], tokenizer, config: FinetuneConfig) -> DryRun:
    prepared = prepare(records, tokenizer, config)
    chat = uses_chat_template(tokenizer, config)
    missing = [] if chat else [e.record_id for e in prepared.train + prepared.eval
                               if RESPONSE_KEY not in tokenizer.decode(
                                   [t for t, label in zip(e.input_ids, e.labels) if label == IGNORE])]
    first = prepared.train[0]
    cut = next(i for i, label in enumerate(first.labels) if label != IGNORE)  # where the response starts
    everything = prepared.train + prepared.eval
    eos_trained = all(e.labels[-1] == tokenizer.eos_token_id for e in everything)
    return DryRun(len(records), len(prepared.train), len(prepared.eval),
                  [(r.id, n) for r, n in prepared.too_long], len(prepared.no_response), missing, eos_trained,
                  tokenizer.decode(first.input_ids[:cut]), tokenizer.decode(first.input_ids[cut:]),
                  cut, len(first.input_ids) - cut, chat, sum(e.trained for e in prepared.train))


def preview(base: str, data, config: FinetuneConfig):
    """The dry run of DATA's records with BASE's tokenizer: (report, bad input lines); nothing is trained."""
    from workbench.core.io import load_records
    from workbench.core.models import load_tokenizer

    problems: list = []
    records = load_records(data, problems)
    return dry_run(records, load_tokenizer(base), config), problems

"""Import public instruction sets (Dolly, OASST1, Alpaca) and our own JSONL into Records.

Sources are local files or folders (JSONL, a JSON array, Parquet) or a hub id read with
`datasets.load_dataset` where a hub is reachable. Bad rows become Problems; good rows are always kept.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import InputError
from workbench.core.hub import hub_error, looks_like_hub_id
from workbench.core.io import Problem, record_rows, records_from_objects
from workbench.core.records import DEFAULT_MAX_FIELD_BYTES, FIELDS, LICENSES, Record, check_record_dict

FORMATS = ("dolly", "oasst1", "alpaca", "jsonl")
# Our field -> the source's field, per format; --map overrides single entries.
FORMAT_FIELDS = {
    "dolly": {"instruction": "instruction", "context": "context", "response": "response", "category": "category"},
    "alpaca": {"instruction": "instruction", "context": "input", "response": "output"},
    "jsonl": {name: name for name in FIELDS},
}
OWN_ONLY_FIELDS = frozenset(FIELDS) - {"instruction", "context", "response", "category"}
READABLE_SUFFIXES = (".jsonl", ".json", ".parquet")
GUESS_ROWS = 100  # rows per file whose field names decide the format

Row = tuple[int, dict[str, Any], str]


class ImportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["dolly", "oasst1", "alpaca", "jsonl"] | None = None  # None: guessed from the fields
    field_map: dict[str, str] = Field(default_factory=dict)  # our field -> source field, e.g. response=answer
    lang: str | None = None  # oasst1 only: keep conversations in this language ("en"); None keeps all
    source: str | None = None  # the records' `source` label; default: the format's name (jsonl: as given)
    allow_unknown_categories: bool = False  # accept categories outside Dolly's eight
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES  # longer text fields are quarantined


@dataclass
class ImportResult:
    records: list[Record]
    format: str
    skipped: Counter = field(default_factory=Counter)  # rows left out on purpose, by reason (not problems)


def parse_field_map(text: str | None) -> dict[str, str]:
    """'instruction=question,response=answer' -> {'instruction': 'question', 'response': 'answer'}."""
    if not text:
        return {}
    mapping = {}
    for part in text.split(","):
        ours, sep, theirs = part.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise InputError(f"--map: {part!r} is not OURS=THEIRS",
                             hint="example: --map instruction=question,response=answer")
        if ours.strip() not in FIELDS:
            raise InputError(f"--map: {ours.strip()!r} is not a record field; fields: {', '.join(FIELDS)}")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def import_records(source: str | Path, config: ImportConfig, problems: list[Problem]) -> ImportResult:
    """Read SOURCE (file, folder or hub id) in the configured or guessed format."""
    rows_by_file = list(_source_rows(str(source), problems))
    sample = [obj for _, rows in rows_by_file for _, obj, _ in rows[:GUESS_ROWS]]
    fmt = config.format or guess_format(sample, config.field_map)
    _check_fields(source, fmt, sample, config.field_map)
    if config.lang and fmt != "oasst1":
        raise InputError(f"--lang filters OASST1 conversations only; {source} was read as {fmt}")
    result = ImportResult(records=[], format=fmt)
    seen: dict[str, str] = {}
    for name, rows in rows_by_file:
        if fmt == "oasst1":
            converted = _oasst_rows(name, rows, config, problems, result.skipped)
        else:
            converted = _mapped_rows(name, rows, fmt, config, problems)
        # An id repeated inside one import is an exact duplicate row: reported with its line, dropped.
        result.records.extend(records_from_objects(
            name, converted, problems, seen_ids=seen,
            allow_unknown_categories=config.allow_unknown_categories, max_field_bytes=config.max_field_bytes))
    return result


def import_file(source: str | Path, config: ImportConfig, output: str | Path) -> tuple[ImportResult, list[Problem]]:
    """`workbench data import`: SOURCE's records written to OUTPUT; returns what was read and the bad rows."""
    from workbench.core.io import refuse_overwrite, write_records

    refuse_overwrite(output, [source], "this import")
    problems: list[Problem] = []
    result = import_records(source, config, problems)
    write_records(output, result.records)
    return result, problems


def _check_fields(source: str | Path, fmt: str, sample: list[dict[str, Any]], field_map: dict[str, str]) -> None:
    """The fields the format (and --map) reads must be in the file: a wrong --format or a misspelt --map would
    otherwise import empty responses, or nothing, and exit 0."""
    if fmt == "oasst1" or not sample:
        return
    keys = set().union(*sample)
    mapping = {**FORMAT_FIELDS[fmt], **field_map}
    needed = {"instruction", "response"} if fmt in ("dolly", "alpaca") else {"instruction"}
    needed |= set(field_map)
    missing = sorted(mapping[ours] for ours in needed if mapping[ours] not in keys)
    if missing:
        looks = guess_format(sample, {})
        if set(missing) & set(field_map.values()):
            hint = "check --map OURS=THEIRS: THEIRS must be one of the file's fields listed above"
        elif looks not in (fmt, "jsonl"):
            hint = f"it looks like {looks}: pass --format {looks}"
        else:
            hint = "map the fields with --map OURS=THEIRS, e.g. --map instruction=question,response=answer"
        raise InputError(f"{source}: read as {fmt}, but no row of the first {len(sample)} has the field(s) "
                         f"{', '.join(map(repr, missing))} (they have: {', '.join(sorted(keys)[:12])})", hint=hint)


def guess_format(sample: list[dict[str, Any]], field_map: dict[str, str]) -> str:
    """Name the format whose fields the sample rows have; our own JSONL when nothing else fits."""
    if not sample or field_map:
        return "jsonl"
    keys = set().union(*sample)
    if {"message_id", "role", "text"} <= keys or {"prompt", "message_tree_id"} <= keys:
        return "oasst1"
    if {"instruction", "input", "output"} <= keys:
        return "alpaca"
    # Dolly's fields without our own (id, lineage, ...): a Dolly export, even with extra columns (label,
    # source_url); the extras go into meta. With our fields it is our format, where an unknown field is an error.
    if {"instruction", "response"} <= keys and not keys & OWN_ONLY_FIELDS:
        return "dolly"
    return "jsonl"


def _source_rows(source: str, problems: list[Problem]) -> Iterator[tuple[str, list[Row]]]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in READABLE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{source}: no {', '.join(READABLE_SUFFIXES)} files in this folder")
        for file in files:
            yield str(file), list(record_rows(file, problems))
    elif path.exists():
        yield str(path), list(record_rows(path, problems))
    elif looks_like_hub_id(source):
        yield from _hub_rows(source)
    else:
        raise InputError(f"{source}: no such file or folder")


def _hub_rows(source: str) -> Iterator[tuple[str, list[Row]]]:
    import datasets

    try:
        loaded = datasets.load_dataset(source)
    except Exception as e:  # connection, offline-mode and not-found errors all mean "not to be had from here"
        raise hub_error(source, e) from e
    for split, dataset in loaded.items():
        name = f"{source}[{split}]"
        yield name, [(i, dict(row), json.dumps(row, ensure_ascii=False, default=str))
                     for i, row in enumerate(dataset, start=1)]


def _mapped_rows(name: str, rows: list[Row], fmt: str, config: ImportConfig,
                 problems: list[Problem]) -> Iterator[Row]:
    mapping = {**FORMAT_FIELDS[fmt], **config.field_map}
    theirs_to_ours = {theirs: ours for ours, theirs in mapping.items()}
    for number, obj, raw in rows:
        record = {ours: obj[theirs] for ours, theirs in mapping.items() if theirs in obj}
        if fmt == "jsonl":
            leftovers = {k: v for k, v in obj.items() if k not in theirs_to_ours}
            if config.field_map:
                # A foreign file described by --map: its other fields are kept in meta under their names.
                record["meta"] = {**leftovers, **(record.get("meta") or {})}
            else:
                record.update(leftovers)  # our own format: an unknown field is an error, with did-you-mean
            if config.source:
                record["source"] = config.source
        else:
            # Public sets write a missing context as null or leave it out; both mean "no context".
            for text_field in ("context", "response"):
                if record.get(text_field) is None:
                    record[text_field] = ""
            record["source"] = config.source or fmt
            # Fields the format does not read (a Dolly export's label or source_url) are kept, not dropped.
            extra = {k: v for k, v in obj.items() if k not in theirs_to_ours}
            record["meta"] = {**extra, "license": LICENSES[fmt]}
        found = check_record_dict(record, allow_unknown_categories=config.allow_unknown_categories,
                                  max_field_bytes=config.max_field_bytes)
        if found:
            # Name the field as the source file spells it, so the user can find it.
            problems.extend(Problem(name, number, mapping.get(f, f), reason, raw) for f, reason in found)
            continue
        record["lineage"] = [*(record.get("lineage") or []), _import_event(name, number, fmt)]
        yield number, record, raw


def _import_event(name: str, number: int, fmt: str) -> dict[str, Any]:
    return {"stage": "import", "action": "import", "reason": None,
            "detail": {"format": fmt, "file": Path(name).name, "line": number}, "run": None}


def _flatten_oasst_trees(rows: list[Row]) -> Iterator[Row]:
    """The 'trees' export nests replies inside each prompt; give back one row per message."""
    for number, obj, raw in rows:
        if "prompt" not in obj:
            yield number, obj, raw
            continue
        stack = [(obj["prompt"], None)]
        while stack:
            message, parent = stack.pop()
            flat = {k: v for k, v in message.items() if k != "replies"}
            flat.setdefault("parent_id", parent)
            flat.setdefault("message_tree_id", obj.get("message_tree_id"))
            yield number, flat, raw
            stack.extend((reply, message.get("message_id")) for reply in reversed(message.get("replies") or []))


def _oasst_rows(name: str, rows: list[Row], config: ImportConfig, problems: list[Problem],
                skipped: Counter) -> Iterator[Row]:
    """Rebuild OASST1 message trees into (initial prompt -> best-ranked assistant reply) pairs.

    A usable message is not deleted and not rejected in review (review_result False); the best reply
    is the one with the lowest rank (0 = best), unranked replies last, file order breaking ties.
    Only first turns become records: deeper prompter turns need the conversation before them.
    """
    messages: dict[str, tuple[int, dict[str, Any], str]] = {}
    children: dict[str, list[str]] = {}
    for number, msg, raw in _flatten_oasst_trees(rows):
        missing = [k for k in ("message_id", "role", "text") if not isinstance(msg.get(k), str)]
        if missing:
            problems.append(Problem(name, number, missing[0], "missing or not a string", raw))
            continue
        if msg["role"] not in ("prompter", "assistant"):
            reason = f"expected 'prompter' or 'assistant', got {msg['role']!r}"
            problems.append(Problem(name, number, "role", reason, raw))
            continue
        messages[msg["message_id"]] = (number, msg, raw)
        if msg.get("parent_id"):
            children.setdefault(msg["parent_id"], []).append(msg["message_id"])

    def usable(msg: dict[str, Any]) -> bool:
        return not msg.get("deleted") and msg.get("review_result") is not False

    for message_id, (number, msg, raw) in messages.items():
        if msg.get("parent_id") or msg["role"] != "prompter":
            continue
        if not usable(msg):
            skipped["oasst1: prompt deleted or rejected in review"] += 1
            continue
        if config.lang and msg.get("lang") != config.lang:
            skipped[f"oasst1: language not {config.lang}"] += 1
            continue
        replies = [messages[c][1] for c in children.get(message_id, [])
                   if messages[c][1]["role"] == "assistant" and usable(messages[c][1])]
        if not replies:
            skipped["oasst1: prompt without a usable assistant reply"] += 1
            continue
        best = min(replies, key=lambda r: r["rank"] if isinstance(r.get("rank"), (int, float)) else math.inf)
        yield number, {
            "instruction": msg["text"], "context": "", "response": best["text"], "category": None,
            "source": config.source or "oasst1",
            "lineage": [_import_event(name, number, "oasst1")],
            "meta": {"license": LICENSES["oasst1"], "lang": msg.get("lang"),
                     "oasst_tree_id": msg.get("message_tree_id"), "oasst_message_id": message_id,
                     "oasst_reply_id": best["message_id"], "oasst_reply_rank": best.get("rank")},
        }, raw

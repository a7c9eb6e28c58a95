"""The one Record type that flows through every stage, and the checks that make a dict one."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

# Dolly-15k's eight categories, with the counts its release published (15,011 records in all).
DOLLY_CATEGORY_COUNTS = {
    "open_qa": 3742,
    "general_qa": 2191,
    "classification": 2136,
    "closed_qa": 1773,
    "brainstorming": 1766,
    "information_extraction": 1506,
    "summarization": 1188,
    "creative_writing": 709,
}
CATEGORIES = tuple(DOLLY_CATEGORY_COUNTS)

# Licences of the public sets the importers read; kept in meta.license through every stage.
LICENSES = {
    "dolly": "CC BY-SA 3.0",
    "oasst1": "Apache-2.0",
    "alpaca": "CC BY-NC 4.0",
}

FIELDS = ("id", "instruction", "context", "response", "category", "source", "lineage", "scores", "meta")
TEXT_FIELDS = ("instruction", "context", "response")
LINEAGE_KEYS = ("stage", "action", "reason", "detail", "run")
DEFAULT_MAX_FIELD_BYTES = 1_000_000


def normalise(text: str) -> str:
    """NFC-normalise and strip: the form ids are computed over."""
    return unicodedata.normalize("NFC", text).strip()


def record_id(instruction: str, context: str = "", response: str = "") -> str:
    """Stable content id: first 16 hex digits of sha256 over the normalised texts joined by U+001F."""
    joined = "\x1f".join(normalise(t) for t in (instruction, context, response))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:16]


@dataclass
class Record:
    """One instruction-tuning example and everything the stages learned about it."""

    instruction: str
    context: str = ""
    response: str = ""
    category: str | None = None  # one of CATEGORIES, or None = not yet categorised
    source: str = "human"  # seed, human, dolly, oasst1, alpaca, generated, or a user's label
    id: str = ""  # computed from the texts when empty, then kept for life
    lineage: list[dict] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = record_id(self.instruction, self.context, self.response)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def with_event(self, stage: str, action: str, reason: str | None = None,
                   detail: Any = None, run: str | None = None, **changes: Any) -> Record:
        """A copy with one lineage event appended (and any field changes); the id never changes."""
        event = {"stage": stage, "action": action, "reason": reason, "detail": detail, "run": run}
        return replace(self, lineage=[*self.lineage, event], **changes)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], **check_options: Any) -> Record:
        """Build a Record from a JSON object; raises RecordError listing every problem."""
        problems = check_record_dict(obj, **check_options)
        if problems:
            raise RecordError(problems)
        return cls.from_checked(obj)

    @classmethod
    def from_checked(cls, obj: dict[str, Any]) -> Record:
        """Build from a dict that check_record_dict already passed (readers check once, not twice)."""
        return cls(**{name: obj[name] for name in FIELDS if obj.get(name) is not None})


class RecordError(ValueError):
    """A dict is not a valid Record; .problems lists (field, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {r}" for f, r in problems))
        self.problems = problems


def did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """' (did you mean X?)' when a choice is close, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


_FIELD_SET = frozenset(FIELDS)
_CATEGORY_SET = frozenset(CATEGORIES)


def _plainly_valid(obj: Any, allow_unknown_categories: bool, max_field_bytes: int) -> bool:
    """A quick yes for the common record (plain strings, known fields, nothing nested to check); anything
    else gets the full check below, which names every problem. Reading a million records spends most of
    its validation time here, so this stays a few attribute tests."""
    if type(obj) is not dict or not obj.keys() <= _FIELD_SET:
        return False
    instruction = obj.get("instruction")
    if type(instruction) is not str or not instruction.strip():
        return False
    for name in ("id", "context", "response", "source"):
        value = obj.get(name, "")
        if value is not None and type(value) is not str:
            return False
    if obj.get("id") is not None and not obj["id"].strip():
        return False
    category = obj.get("category")
    if category is not None and (type(category) is not str or not (allow_unknown_categories or category in
                                                                    _CATEGORY_SET)):
        return False
    if obj.get("lineage") or obj.get("scores") or type(obj.get("meta", {})) is not dict:
        return False  # lineage events and scores need the full check
    if obj.get("lineage") is not None and type(obj["lineage"]) is not list:
        return False
    if obj.get("scores") is not None and type(obj["scores"]) is not dict:
        return False
    texts = [v for v in (instruction, obj.get("context"), obj.get("response"), obj.get("id"), obj.get("source"))
             if v]
    # 4 bytes is the most a character takes in UTF-8: shorter texts are surely under the byte limit.
    return all("\x00" not in v and len(v) * 4 <= max_field_bytes for v in texts)


def check_record_dict(obj: Any, *, allow_unknown_categories: bool = False,
                      max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> list[tuple[str, str]]:
    """Every problem that stops `obj` from being a Record, as (field, reason); empty when valid."""
    if _plainly_valid(obj, allow_unknown_categories, max_field_bytes):
        return []
    if not isinstance(obj, dict):
        return [("-", f"expected a JSON object, got {_type_name(obj)}")]
    problems: list[tuple[str, str]] = []
    for key in obj:
        if key not in FIELDS:
            problems.append((key, f"unknown field{did_you_mean(key, FIELDS)}; known fields: {', '.join(FIELDS)}"))

    def expect(name: str, types: tuple[type, ...], label: str, nullable: bool = True) -> bool:
        value = obj.get(name)
        if value is None and nullable:
            return False
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            problems.append((name, f"expected {label}, got {_type_name(value)}"))
            return False
        return True

    if "instruction" not in obj or obj["instruction"] is None:
        problems.append(("instruction", "missing"))
    elif expect("instruction", (str,), "a string", nullable=False) and not obj["instruction"].strip():
        problems.append(("instruction", "empty"))
    for name in ("context", "response", "source"):
        expect(name, (str,), "a string")
    if expect("id", (str,), "a string") and not obj["id"].strip():
        problems.append(("id", "empty (leave the field out to have it computed)"))
    if expect("category", (str,), "a string or null") and not allow_unknown_categories:
        if obj["category"] not in CATEGORIES:
            problems.append(("category", f"unknown category {obj['category']!r}"
                             f"{did_you_mean(obj['category'], CATEGORIES)}; expected one of {', '.join(CATEGORIES)}"))
    if expect("lineage", (list,), "an array of events"):
        for i, event in enumerate(obj["lineage"]):
            if not isinstance(event, dict) or not isinstance(event.get("stage"), str) \
                    or not isinstance(event.get("action"), str):
                problems.append((f"lineage[{i}]", "expected an object with string 'stage' and 'action'"))
    if expect("scores", (dict,), "an object of numbers"):
        for key, value in obj["scores"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append((f"scores.{key}", f"expected a finite number, got {_type_name(value)}"))
    expect("meta", (dict,), "an object")
    for name in ("id", *TEXT_FIELDS, "source"):
        value = obj.get(name)
        if isinstance(value, str):
            if "\x00" in value:
                problems.append((name, "contains a NUL character"))
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > max_field_bytes:
                problems.append((name, f"{size:,} bytes, over the limit of {max_field_bytes:,}"))
    return problems

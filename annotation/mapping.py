"""Record <-> Argilla, as plain data: what a record looks like to annotators (fields, metadata, suggestions), the
questions they answer, and the Record rebuilt from what the server returns. Pure functions: no client, no server
(`annotation.client` turns these into the argilla SDK's objects).

Argilla record ids *are* our record ids (its `external_id`), so pushing the same file twice changes nothing. The whole
Record (lineage, scores, meta) rides along in one extra metadata entry that annotators never see, so a pull rebuilds
exactly what was pushed, plus what the annotators decided.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from workbench.core.records import CATEGORIES, Record

DECISIONS = ("keep", "discard")
RECORD_KEY = "workbench_record"  # extra metadata (no property defined: not shown, not filterable) holding the Record
TEXT_FIELDS = (  # (name, title, required)
    ("instruction", "Instruction", True),
    ("context", "Context", False),
    ("response", "Response", False),
)
QUESTIONS = (  # (name, kind, title, required, options): every question the review asks
    ("decision", "label", "Keep or discard this record?", True, DECISIONS),
    ("quality", "rating", "Quality (1 poor - 5 excellent)", False, (1, 2, 3, 4, 5)),
    ("category", "label", "Category", False, CATEGORIES),
    ("corrected_instruction", "text", "Corrected instruction (optional)", False, ()),
    ("corrected_response", "text", "Corrected response (optional)", False, ()),
)
CORRECTIONS = (("corrected_instruction", "instruction"), ("corrected_response", "response"), ("category", "category"))
METADATA = (  # (name, kind, where the value comes from in a Record)
    ("toxicity_max", "float", lambda r: r.scores.get("toxicity_max")),
    ("screen_route", "terms", lambda r: r.meta.get("screen_route")),
    ("dedup_cluster_size", "integer", lambda r: r.meta.get("dedup_cluster_size")),
    ("source", "terms", lambda r: r.source),
    ("model", "terms", lambda r: r.meta.get("model")),
    ("round", "integer", lambda r: r.meta.get("round")),
)
GUIDELINES = """\
Each record is one instruction-tuning example: an instruction, an optional context and the response a model
should learn to give.

- **decision** (required): *keep* if the instruction is clear and the response is correct, helpful and safe;
  *discard* otherwise (wrong, unsafe, off-topic, a near-duplicate you have already seen, or not fixable quickly).
- **quality**: 1 (poor) to 5 (excellent), for the pair as it stands after your corrections.
- **category**: pre-filled from the record; change it if it is wrong.
- **corrected_instruction / corrected_response**: only when a small edit makes the record good; write the whole
  corrected text. Leave them empty otherwise.

The metadata (toxicity, screen route, duplicate cluster size, source, model, round) lets you filter and sort; the
suggested decision comes from the toxicity screen.
"""


def fields_of(record: Record) -> dict[str, str]:
    return {"instruction": record.instruction, "context": record.context, "response": record.response}


def metadata_of(record: Record) -> dict[str, Any]:
    """The filterable metadata, and the whole Record under RECORD_KEY."""
    metadata = {name: get(record) for name, _, get in METADATA}
    metadata = {k: v for k, v in metadata.items() if v is not None and v != ""}
    metadata[RECORD_KEY] = record.to_json()
    return metadata


def suggestions_of(record: Record) -> list[dict[str, Any]]:
    """Pre-filled answers: the screen's decision with its confidence, and the record's category."""
    out = []
    route = record.meta.get("screen_route")
    if route in ("pass", "review"):
        toxicity = float(record.scores.get("toxicity_max", 0.0))
        agent = f"screen:{record.meta.get('screen_scorer', 'toxicity')}"
        # The screen's confidence: how far the toxicity score is from the side it routed to.
        value, score = ("keep", 1.0 - toxicity) if route == "pass" else ("discard", toxicity)
        out.append({"question": "decision", "value": value, "score": round(score, 4), "agent": agent})
    if record.category in CATEGORIES:
        method = next((e.get("detail", {}).get("method") for e in reversed(record.lineage)
                       if isinstance(e.get("detail"), dict) and e["detail"].get("method")), None)
        out.append({"question": "category", "value": record.category, "score": None,
                    "agent": f"workbench:{method or record.source}"})
    return out


def record_of(item: dict, problems: list[str]) -> Record | None:
    """The Record behind a server record (REST shape): the pushed one, or one rebuilt from the fields when
    something other than the workbench pushed it; None (and a problem) when neither can be had."""
    text = (item.get("metadata") or {}).get(RECORD_KEY)
    if text:
        try:
            return Record.from_dict(json.loads(text))
        except ValueError as e:
            problems.append(f"record {item.get('external_id')}: the pushed record cannot be read back ({e})")
            return None
    fields = item.get("fields") or {}
    if not fields.get("instruction"):
        problems.append(f"record {item.get('external_id') or item['id']}: no instruction field")
        return None
    metadata = item.get("metadata") or {}
    record = Record(instruction=fields["instruction"], context=fields.get("context") or "",
                    response=fields.get("response") or "", source=str(metadata.get("source") or "argilla"),
                    category=metadata.get("category") if metadata.get("category") in CATEGORIES else None)
    return replace(record, id=item.get("external_id") or record.id)


def response_values(response: dict) -> dict[str, Any]:
    """question -> answer of one response (REST shape)."""
    return {q: v.get("value") for q, v in (response.get("values") or {}).items()}


def export_rows(raw: Iterable[dict], users: dict[str, str]) -> Iterator[dict]:
    """Backup rows: the Record as pushed plus every raw response (user, status, values, times)."""
    for item in raw:
        metadata = dict(item.get("metadata") or {})
        record = metadata.pop(RECORD_KEY, None)
        yield {
            "id": item.get("external_id"),
            "argilla_id": item["id"],
            "status": item.get("status"),
            "fields": item.get("fields"),
            "metadata": metadata,
            "record": json.loads(record) if record else None,
            "suggestions": [{k: s.get(k) for k in ("question_name", "value", "score", "agent")}
                            for s in item.get("suggestions") or []],
            "responses": [{"user_id": r["user_id"], "username": users.get(str(r["user_id"])), "status": r["status"],
                           "values": response_values(r), "inserted_at": r.get("inserted_at"),
                           "updated_at": r.get("updated_at")}
                          for r in item.get("responses") or []],
            "inserted_at": item.get("inserted_at"),
            "updated_at": item.get("updated_at"),
        }

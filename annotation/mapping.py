"""Record <-> Argilla, as plain data: what a record looks like to annotators (fields, metadata, suggestions) and the
Record rebuilt from what the server returns. Pure functions: no client, no server (`annotation.client` turns these
into the argilla SDK's objects). The questions annotators answer are declared in `annotation.questions`.

Argilla record ids *are* our record ids (its `external_id`), so pushing the same file twice changes nothing. The rest
of the Record (lineage, scores, meta: everything but the three texts) rides along in one extra metadata entry that
annotators never see, so a pull rebuilds exactly what was pushed, plus what the annotators decided.

Argilla 2.8's UI puts a plain-text field into the page as HTML (`List<String>` shows as "List"; a field with paired
tags goes into an iframe where its scripts run, with the annotator's token in reach). So the texts are pushed with
`& < >` written as entities, which the UI shows as exactly the characters of the record and which no browser runs;
a pull turns them back (`html.unescape` undoes `html.escape` exactly). Its copy button copies the escaped form: a
correction pasted from it comes back unescaped where the record's own text has the characters (`annotation.votes`).
Characters that change what is shown without being seen (bidirectional controls, zero-width ones) are pushed as
visible markers, ⟦U+202E⟧, and turned back at the pull (`workbench.core.text.show_hidden`).

A comparison (`annotate push --compare`) is one server record per group of candidates that `generate responses`
made for one instruction (`meta.compare_group`): the instruction, its context, the K responses as fields
response_1..K, and a ranking question over them. Its id is the group's; the candidates ride along as above.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from annotation.questions import CATEGORY, DECISION, EMPTY_SLOT, ON_THE_PAGE, PAGE_ANSWERS, slot
from workbench.core.errors import InputError
from workbench.core.records import CATEGORIES, Record
from workbench.core.text import restore_hidden, show_hidden

TEXT_NAMES = ("instruction", "context", "response")
RECORD_KEY = "workbench_record"  # extra metadata (no property defined: not shown, not filterable) holding the Record
TEXT_FIELDS = (  # (name, title, required)
    ("instruction", "Instruction", True),
    ("context", "Context", False),
    ("response", "Response", False),
)


def _rounded(value: Any) -> float | None:
    # 4 decimals: the server reports a float property's range rounded to 5, so a range filter from the slider's
    # ends would miss a record at either extreme if more digits were sent.
    return None if value is None else round(float(value), 4)


def screen_reasons(record: Record) -> list[str]:
    """Why the screen sent a record to review, as annotators can filter by it: the toxicity labels at or above
    their pass threshold and the kinds of personal data found (older screen output: the top label)."""
    if record.meta.get("screen_route") not in ("review", "reject"):
        return []
    reasons = record.meta.get("screen_reasons")
    if reasons is None:  # screened before the screen kept its reasons: the top label
        labels: dict[str, float] = {}
        for key, value in record.scores.items():
            _, field, label = (key.split("_", 2) + ["", ""])[:3]
            if key.startswith("toxicity_") and field in TEXT_NAMES:
                labels[label] = max(labels.get(label, 0.0), float(value))
        top = [f"toxicity: {max(labels, key=labels.get)}"] if labels and max(labels.values()) > 0 else []
        reasons = top + [f"personal data: {kind}" for kind in record.meta.get("pii") or {}]
    return list(reasons)


METADATA = (  # (name, kind, where the value comes from in a Record); every property is shown to annotators
    ("record_id", "terms", lambda r: r.id),
    ("toxicity_max", "float", lambda r: _rounded(r.scores.get("toxicity_max"))),
    ("screen_route", "terms", lambda r: r.meta.get("screen_route")),
    ("screen_reason", "terms", lambda r: screen_reasons(r) or None),
    ("dedup_cluster_size", "integer", lambda r: r.meta.get("dedup_cluster_size")),
    ("source", "terms", lambda r: r.source),
    ("model", "terms", lambda r: r.meta.get("model")),
    ("round", "integer", lambda r: r.meta.get("round")),
)
GUIDELINES = """\
Each record is one instruction-tuning example: an **instruction**, an optional **context** (the passage the answer
must come from) and the **response** a model should learn to give. The text is shown exactly as it is in the
record, code and markup included.

## Keep, discard, correct

- **Keep** when the instruction is clear and the response is correct, helpful, safe and answers from the context
  (when there is one). Give it a **quality** from 1 (poor) to 5 (excellent), judged after your corrections.
- **Correct** when a small edit makes the record good: choose *keep* and write the whole corrected text in
  *corrected instruction* or *corrected response*. Leave them empty otherwise. (The copy button copies `<`, `>` and
  `&` written as `&lt;`, `&gt;` and `&amp;`; pasted into a correction they are read back as the characters.)
- **⟦U+202E⟧** and the like mark a character that changes what the text looks like without being seen (a
  right-to-left override, a zero-width joiner): the record holds it there. Such records come to review with the
  screen reason *hidden characters*; discard a record that hides something, or correct it without the marker.
- **Discard** when the record is wrong, unsafe, off-topic, a near-duplicate of one you have seen, or not quickly
  fixable: choose *discard* and submit, or press the **Discard** button at the bottom. Both count as a discard vote.
- **Category**: pre-filled from the record; change it if it is wrong. When annotators who keep a record disagree
  on its category, the most common choice wins (a tie keeps the record's own).

A pre-selected *keep* or *discard* is the toxicity screen's suggestion, made only where the screen was confident
(its confidence is the small number beside it); records the screen was unsure about come with no decision chosen,
and the reason is in their metadata. Check the suggestion: submitting accepts it, and clicking a pre-selected
answer unselects it (click the other one to change it).

## Metadata (filter and sort by it)

- **record_id**: the record's id in the workbench (quote it when you report a problem with a record).
- **toxicity_max**: the screen's highest toxicity score over every label and text, 0 to 1 (4 decimals).
- **screen_route**: *pass* (the screen found nothing), *review* (it is unsure: read carefully) or *reject*.
- **screen_reason**: why a record was routed to review: a toxicity label at or above its threshold
  (`toxicity: insult`) or a kind of personal data found (`personal data: email`).
- **dedup_cluster_size**: how many near-duplicates the record stood for (1 = unique).
- **source**: where the record comes from (generated, from-docs, dolly, oasst, ...).
- **model**: the model that generated it. **round**: the generation round.
"""


SUITE_GUIDELINES = """\
Each record is one **question** a prospective student might ask (the *instruction*), the **page** it is asked of (the
*context*) and the **reference answer** drafted from that page (the *response*). Together they become an evaluation
suite: the model is asked the question with the page, and its answer is scored against the reference. Nothing here
is trained on.

- **Keep** a question a student would really ask and that has one right answer; **discard** one that is unclear,
  wrong, a near-copy of another, or not worth asking (the Discard button counts as a discard too).
- **Does the page answer it?** *answered* when the page gives the answer; *not on the page* when it does not (the
  right answer is then to say the page does not tell, and the reference is ignored). The draft's guess is
  pre-selected: check it.
- **Corrected question**: the whole question, rewritten, when a small edit makes it clear.
- **Corrected reference answer**: the shortest answer that is right, in the page's words (answers are scored by the
  words they share with it: "15 December", not "The deadline is 15 December for a March start."). Leave it empty
  when the draft's is right. (The copy button copies `<`, `>` and `&` as `&lt;`, `&gt;` and `&amp;`; pasted into a
  correction they are read back as the characters.)
"""


def shown(text: str) -> str:
    """A text as pushed, so that the UI shows its exact characters and runs none of it (see the module's note),
    a hidden character (a right-to-left override, a zero-width joiner) as a visible marker, ⟦U+202E⟧."""
    return html.escape(show_hidden(text), quote=False)


def read_back(text: str) -> str:
    """A text as the server has it (a field, or an annotator's correction) as the record's text: the escaping and
    the markers undone."""
    return restore_hidden(html.unescape(text))


def fields_of(record: Record) -> dict[str, str]:
    return {name: shown(getattr(record, name)) for name in TEXT_NAMES}


def texts_of(item: dict) -> dict[str, str]:
    """The texts an annotator sees on a server record (REST shape): its fields with the escaping undone."""
    return {name: read_back(value) for name, value in (item.get("fields") or {}).items() if isinstance(value, str)}


def metadata_of(record: Record) -> dict[str, Any]:
    """The filterable metadata, and under RECORD_KEY the Record without its texts (they are the fields)."""
    metadata = {name: get(record) for name, _, get in METADATA}
    metadata = {k: v for k, v in metadata.items() if v is not None and v != ""}
    rest = {k: v for k, v in record.to_dict().items() if k not in TEXT_NAMES}
    metadata[RECORD_KEY] = json.dumps(rest, ensure_ascii=False, separators=(",", ":"))
    return metadata


ADJUDICATION_FIELD = ("annotators", "What the annotators answered", True)  # beside the three texts
ADJUDICATION_GUIDELINES = """\
Each record here is one the annotators could not agree on: its **instruction**, **context** and **response** as
pushed, and under **What the annotators answered** every annotator's answers side by side (their decision, quality,
category and corrections). You decide, alone: keep or discard, and, if a correction is right, write the corrected
text (copy it from the annotator who had it right). Your answer is the record's final one.
"""


def adjudication_item(record: Record) -> dict[str, Any]:
    """The server record of a disputed record for the adjudicator: the record's own item plus a field with every
    annotator's answers (from its last dispute, `annotation.votes`)."""
    dispute = next((e for e in reversed(record.lineage) if e.get("action") == "dispute"), None)
    if dispute is None or not isinstance(dispute.get("detail"), dict):
        raise InputError(f"record {record.id}: not disputed (no dispute in its lineage): only a pull's disputed "
                         "records are adjudicated")
    detail = dispute["detail"]
    lines = [f"Why disputed: {dispute.get('reason')}"]
    for annotator, answers in sorted((detail.get("answers_by_annotator") or {}).items()):
        said = "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in answers.items())
        lines.append(f"{annotator}: {said or '(Discard button)'}")
    if len(lines) == 1:  # disputed before the answers were kept: the votes alone
        lines += [f"{(detail.get('users') or {}).get(u) or u}: {v}" for u, v in (detail.get("votes") or {}).items()]
    item = record_item(record)
    item["fields"][ADJUDICATION_FIELD[0]] = shown("\n".join(lines))
    return item


def record_item(record: Record) -> dict[str, Any]:
    """The server record of one record (id, fields, metadata, suggestions) for the review dataset."""
    return {"id": record.id, "fields": fields_of(record), "metadata": metadata_of(record),
            "suggestions": suggestions_of(record)}


def suggestions_of(record: Record) -> list[dict[str, Any]]:
    """Pre-filled answers: a decision only where the screen was confident (pass: keep, reject: discard), with its
    confidence as the score; none for a record it routed to review, where a pre-selected answer would be a vote
    cast by a reviewer who only pressed Submit. And the record's category."""
    out = []
    route = record.meta.get("screen_route")
    if route in ("pass", "reject"):
        toxicity = float(record.scores.get("toxicity_max", 0.0))
        agent = f"screen:{record.meta.get('screen_scorer', 'toxicity')}"
        value, score = ("keep", 1.0 - toxicity) if route == "pass" else ("discard", toxicity)
        out.append({"question": DECISION, "value": value, "score": round(score, 4), "agent": agent})
    if isinstance(record.meta.get("answerable"), bool) and record.meta.get("suite_item"):
        # A drafted eval question: whether the draft found its answer on the page (reviewers confirm or change it).
        out.append({"question": ON_THE_PAGE, "value": PAGE_ANSWERS[0] if record.meta["answerable"] else PAGE_ANSWERS[1],
                    "score": None, "agent": "workbench:suite-draft"})
    if record.category in CATEGORIES:
        method = next((e.get("detail", {}).get("method") for e in reversed(record.lineage)
                       if isinstance(e.get("detail"), dict) and e["detail"].get("method")), None)
        out.append({"question": CATEGORY, "value": record.category, "score": None,
                    "agent": f"workbench:{method or record.source}"})
    return out


def record_of(item: dict, problems: list[str]) -> Record | None:
    """The Record behind a server record (REST shape): the pushed one (its texts from the escaped fields), or one
    rebuilt from the fields when something other than the workbench pushed it; None (and a problem) when neither
    can be had."""
    text = (item.get("metadata") or {}).get(RECORD_KEY)
    fields = item.get("fields") or {}
    if text:
        try:
            data = json.loads(text)
            if "instruction" not in data:  # pushed without its texts, which are the escaped fields
                data.update({name: texts_of(item).get(name, "") for name in TEXT_NAMES})
            return Record.from_dict(data)
        except (ValueError, TypeError, AttributeError) as e:
            problems.append(f"record {item.get('external_id')}: the pushed record cannot be read back ({e})")
            return None
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
        pushed_text = metadata.pop(RECORD_KEY, None)
        if is_comparison_item(item):  # its group of candidates
            group = group_of(item, [])
            pushed = {"candidates": [r.to_dict() for r in group]} if group else None
        else:
            record = pushed_text and record_of(item, [])
            pushed = record.to_dict() if record else None
        yield {
            "id": item.get("external_id"),
            "argilla_id": item["id"],
            "status": item.get("status"),
            "fields": texts_of(item) if pushed else item.get("fields"),  # the texts as annotators saw them
            "metadata": metadata,
            "record": pushed,
            "suggestions": [{k: s.get(k) for k in ("question_name", "value", "score", "agent")}
                            for s in item.get("suggestions") or []],
            "responses": [{"user_id": r["user_id"], "username": users.get(str(r["user_id"])), "status": r["status"],
                           "values": response_values(r), "inserted_at": r.get("inserted_at"),
                           "updated_at": r.get("updated_at")}
                          for r in item.get("responses") or []],
            "inserted_at": item.get("inserted_at"),
            "updated_at": item.get("updated_at"),
        }


# --- comparisons -------------------------------------------------------------------------------------------------

COMPARE_GUIDELINES = """\
Each record shows one **instruction** (with its **context**, when there is one) and several **responses** that
models wrote for it. Rank the responses from best (1) to worst: correct, helpful, safe and answering from the
context beats fluent. Give two responses the same rank only when you cannot tell them apart in quality.

- **Discard** the comparison when the instruction is unclear or unsafe, or no response is usable (it is then left
  out of the preference data).
- A slot that reads "no candidate in this slot" is empty for this record: rank it last; it is ignored.
- **Quality**: how good the best response is, from 1 (poor) to 5 (excellent).

Your rankings become preference pairs (the better response "chosen" over the worse) for DPO; ties make no pair.
"""


COMPARE_METADATA = (("record_id", "terms"), ("source", "terms"), ("candidates", "integer"), ("generators", "terms"))


def compare_text_fields(slots: int) -> tuple[tuple[str, str, bool], ...]:
    return (("instruction", "Instruction", True), ("context", "Context", False),
            *((slot(k), f"Response {k}", k <= 2) for k in range(1, slots + 1)))


def compare_groups(records: list[Record]) -> list[list[Record]]:
    """Candidates grouped by `meta.compare_group` (in file order, slots by `meta.candidate`); refuses a file that
    is not candidates or a group that cannot be compared."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        key = record.meta.get("compare_group")
        if not isinstance(key, str) or not key:
            raise InputError(f"record {record.id} has no meta.compare_group: it is not a candidate to compare",
                             hint="`workbench generate responses IN -o OUT --n K` makes candidates")
        groups.setdefault(key, []).append(record)
    for key, group in groups.items():
        if len(group) < 2:
            raise InputError(f"compare group {key} has one candidate ({group[0].id}): nothing to compare",
                             hint="push candidates as `generate responses` wrote them")
        if len({(r.instruction, r.context) for r in group}) > 1:
            raise InputError(f"compare group {key} mixes instructions: its candidates must answer the same one")
        group.sort(key=lambda r: int(r.meta.get("candidate", 0)))
    return list(groups.values())


def compare_item(group: list[Record], slots: int) -> dict[str, Any]:
    """The server record of one group (id, fields, metadata, suggestions), with `slots` response fields."""
    first = group[0]
    fields = {"instruction": shown(first.instruction), "context": shown(first.context)}
    for k in range(1, slots + 1):
        fields[slot(k)] = shown(group[k - 1].response) if k <= len(group) else EMPTY_SLOT
    metadata = {"record_id": first.meta["compare_group"], "source": first.source, "candidates": len(group),
                "generators": sorted({str(r.meta.get("generator")) for r in group if r.meta.get("generator")}) or None}
    metadata = {k: v for k, v in metadata.items() if v is not None}
    rest = [{k: v for k, v in r.to_dict().items() if k not in TEXT_NAMES} for r in group]
    metadata[RECORD_KEY] = json.dumps({"candidates": rest}, ensure_ascii=False, separators=(",", ":"))
    return {"id": first.meta["compare_group"], "fields": fields, "metadata": metadata, "suggestions": []}


def group_of(item: dict, problems: list[str]) -> list[Record] | None:
    """The candidates behind a comparison record (REST shape), slot by slot; None (and a problem) if unreadable."""
    texts = texts_of(item)
    try:
        rest = json.loads((item.get("metadata") or {})[RECORD_KEY])["candidates"]
        return [Record.from_dict({**data, "instruction": texts.get("instruction", ""),
                                  "context": texts.get("context", ""), "response": texts[slot(k)]})
                for k, data in enumerate(rest, start=1)]
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        problems.append(f"record {item.get('external_id')}: not a comparison the workbench pushed ({e!r})")
        return None


def is_comparison_item(item: dict) -> bool:
    """Whether a server record (REST shape) is a comparison the workbench pushed."""
    try:
        pushed = json.loads((item.get("metadata") or {}).get(RECORD_KEY) or "null")
    except ValueError:
        return False
    return isinstance(pushed, dict) and "candidates" in pushed

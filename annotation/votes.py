"""Several annotators' responses resolved into one decision per record: a policy decides keep or discard,
corrections and the category come from the winning side, and every outcome goes through the ledger. What a pull does
with each answer is declared with its question (`annotation.questions.Question`). Pure: it reads records as the
server returns them and needs no server.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from annotation.agreement import kendall_tau
from annotation.client import ReviewError
from annotation.mapping import group_of, record_of, response_values
from annotation.questions import DECISION, DECISIONS, RANKING, Question, questions_for, ranking_of, slot
from workbench.core.ledger import Ledger
from workbench.core.records import Record

POLICIES = ("majority", "unanimous", "any-discard")


@dataclass
class Pulled:
    curated: list[Record] = field(default_factory=list)
    disputed: list[Record] = field(default_factory=list)  # the policy cannot decide: for a person to settle
    pending: int = 0  # records not yet complete (fewer answers than the dataset's min_submitted)
    unchanged: int = 0  # --since-last: completed records already pulled with the same responses
    discarded: int = 0  # dropped through the ledger
    seen: dict[str, str] = field(default_factory=dict)  # record id -> latest response time, for --since-last
    # comparisons: groups ranked, groups with a tie in the resolved order, candidate pairs the annotators split on
    ranked_groups: int = 0
    tied_groups: int = 0
    split_pairs: int = 0


def vote(decisions: list[str], policy: str) -> str | None:
    """keep / discard, or None when the policy cannot decide (the record is disputed)."""
    counts = Counter(decisions)
    if policy == "any-discard":
        return "discard" if counts["discard"] else "keep"
    if policy == "unanimous":
        return decisions[0] if len(counts) == 1 else None
    if counts["keep"] == counts["discard"]:
        return None
    return "keep" if counts["keep"] > counts["discard"] else "discard"


ANSWERED = ("submitted", "discarded")  # a draft is not an answer yet


def answers_of(item: dict) -> list[dict]:
    """The responses that are votes: submitted ones, and the UI's Discard button (status *discarded*), which an
    annotator presses to mean "discard this record"."""
    return [r for r in item.get("responses") or [] if r.get("status") in ANSWERED]


def is_complete(item: dict, min_submitted: int) -> bool:
    # Counted here, not read from the record's server status, which counts submitted responses only.
    return len(answers_of(item)) >= min_submitted


def agreed(values: list[Any]) -> tuple[bool, Any]:
    """The most common value among those given; (False, None) when two values tie for most common."""
    values = [v for v in values if v not in (None, "")]
    if not values:
        return True, None
    ranked = Counter(values).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return False, None
    return True, ranked[0][0]


def resolve(raw: Iterable[dict], policy: str, ledger: Ledger, *, min_submitted: int = 1, dataset: str = "",
            users: dict[str, str] | None = None, since: dict[str, str] | None = None,
            compare: bool = False, questions: tuple[Question, ...] | None = None) -> tuple[Pulled, list[str]]:
    """A record is complete once it has `min_submitted` answers (submitted, or discarded with the UI's button;
    drafts are not answers). One decision per complete record by `policy`; corrections from the winning side, the
    category by majority among them. Kept records come back curated (edited where annotators corrected them),
    discarded ones are dropped through the ledger, undecidable ones are disputed. `compare`: the records are
    comparisons, and a kept one's candidates come back ranked (`rank`). What each answer does is its question's
    (`annotation.questions`; `questions`: other than the set of the dataset's type). Returns (what was pulled,
    problems)."""
    if policy not in POLICIES:
        raise ReviewError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    questions = questions_for(compare) if questions is None else questions
    users = users or {}
    out, problems = Pulled(), []
    for item in raw:
        answers = answers_of(item)
        if not answers or not is_complete(item, min_submitted):
            out.pending += 1
            continue
        latest = max(str(r.get("updated_at") or "") for r in answers)
        record = group_of(item, problems) if compare else record_of(item, problems)
        if record is None:
            continue
        key = item.get("external_id") or record.id
        out.seen[key] = latest
        if since is not None and since.get(key) == latest:
            out.unchanged += 1
            continue
        values = [(str(r["user_id"]), response_values(r) if r.get("status") == "submitted" else {DECISION: "discard"})
                  for r in answers]
        (rank if compare else _decide)(record, values, policy, ledger, out, {"dataset": dataset, "policy": policy},
                                       users, questions)
    return out, problems


def _means(questions: tuple[Question, ...], values: list[tuple[str, dict[str, Any]]]) -> dict[str, float | None]:
    """Each `mean_as` question's mean over every numeric answer (None without one)."""
    means = {}
    for question in questions:
        if question.mean_as:
            numbers = [n for n in (question.kind_spec.read(v.get(question.name)) for _, v in values)
                       if isinstance(n, (int, float))]
            means[question.mean_as] = sum(numbers) / len(numbers) if numbers else None
    return means


RECORD_FIELDS = tuple(f.name for f in fields(Record))  # corrections are applied in the Record's field order


def _settle(questions: tuple[Question, ...], record: Record, winners: list[dict[str, Any]],
            detail: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """The winning side's agreed answer to each question that is neither the decision, the ranking nor a mean:
    (the Record's corrected attributes, the questions they conflict on, the other questions' answers). A tie on
    an `on_tie="keep"` question is noted in `detail` as `<question>_tie`."""
    settled = sorted((q for q in questions if q.corrects), key=lambda q: RECORD_FIELDS.index(q.corrects))
    settled += [q for q in questions if not q.corrects and not q.mean_as and q.name not in (DECISION, RANKING)]
    changes, conflicts, answered = {}, [], {}
    for question in settled:
        answers = [question.kind_spec.read(v.get(question.name)) for v in winners]
        same, value = agreed(answers)
        if not same and question.on_tie == "keep":
            # A detail of a kept record (its category), not a reason to dispute it: a tie keeps the record's own.
            detail[f"{question.name}_tie"] = sorted({a for a in answers if a})
        elif not same:
            conflicts.append(question.name)
        elif value is None:
            continue
        elif not question.corrects:
            answered[question.name] = value
        elif (value := as_typed(value, getattr(record, question.corrects))) != getattr(record, question.corrects):
            changes[question.corrects] = value
    return changes, conflicts, answered


def as_typed(correction: Any, text: Any) -> Any:
    """A correction pasted from the UI's copy button holds `&lt;`, `&gt;`, `&amp;` where the record's text has `<`,
    `>`, `&` (the copy is of the escaped text): it is read as typed, with the characters, so that copying a text
    unchanged is no correction and an edit of it keeps the record's characters."""
    if not isinstance(correction, str) or not isinstance(text, str):
        return correction
    if any(e in correction for e in ("&lt;", "&gt;", "&amp;")) and any(c in text for c in "<>&"):
        return html.unescape(correction)
    return correction


def _side_by_side(values: list[tuple[str, dict[str, Any]]], users: dict[str, str]) -> dict[str, Any]:
    """A disputed record's answers, annotator by annotator: what an adjudicator reads (`annotate push
    --adjudicate`)."""
    return {"answers_by_annotator": {users.get(user) or user: {k: v for k, v in answers.items() if v not in (None, "")}
                                     for user, answers in values}}


def _decide(record: Record, values: list[tuple[str, dict[str, Any]]], policy: str, ledger: Ledger, out: Pulled,
            detail: dict[str, Any], users: dict[str, str], questions: tuple[Question, ...]) -> None:
    votes = {user: v.get(DECISION) for user, v in values}
    detail = {**detail, "votes": votes, "users": {u: users.get(u) for u in votes}}
    bad = [u for u, d in votes.items() if d not in DECISIONS]
    decision = None if bad else vote(list(votes.values()), policy)
    if decision is None:
        reason = "no decision in a submitted response" if bad else f"annotators disagree ({policy})"
        out.disputed.append(ledger.log(record, "dispute", reason, {**detail, **_side_by_side(values, users)}))
        return
    winners = [v for user, v in values if votes[user] == decision]
    means = {name: round(mean, 3) for name, mean in _means(questions, values).items() if mean is not None}
    scores = {**record.scores, **means}
    if decision == "discard":
        ledger.drop(replace(record, scores=scores), "discarded by review", detail)
        out.discarded += 1
        return
    changes, conflicts, answered = _settle(questions, record, winners, detail)
    if answered:
        detail["answers"] = answered
    if conflicts:
        reason = f"conflicting {' and '.join(conflicts)}"
        out.disputed.append(ledger.log(record, "dispute", reason, {**detail, **_side_by_side(values, users)}))
    elif changes:
        detail["original"] = {k: getattr(record, k) for k in changes}
        out.curated.append(ledger.edit(record, "corrected by review", detail, scores=scores, **changes))
    else:
        out.curated.append(ledger.log(record, "keep", "kept by review", detail, scores=scores))


def borda(rankings: list[dict[str, int]], slots: list[str]) -> dict[str, float]:
    """Borda count: for each annotator, a point for every candidate ranked below, half a point for every one ranked
    the same."""
    points = dict.fromkeys(slots, 0.0)
    for ranks in rankings:
        for a in slots:
            points[a] += sum(1.0 if ranks[a] < ranks[b] else 0.5 if ranks[a] == ranks[b] else 0.0
                             for b in slots if b != a)
    return points


def rank(group: list[Record], values: list[tuple[str, dict[str, Any]]], policy: str, ledger: Ledger, out: Pulled,
         detail: dict[str, Any], users: dict[str, str], questions: tuple[Question, ...] | None = None) -> None:
    """One comparison: keep or discard by `policy` over the decisions; kept, its candidates ranked by the Borda count
    of the keepers' rankings (the same order as their mean rank for rankings without ties). Equal counts share a
    position and are reported as tied; pairs the annotators split on, and their mean Kendall tau, are kept."""
    questions = questions_for(True) if questions is None else questions
    votes = {user: v.get(DECISION) for user, v in values}
    detail = {**detail, "votes": votes, "users": {u: users.get(u) for u in votes}}
    bad = any(d not in DECISIONS for d in votes.values())
    decision = None if bad else vote(list(votes.values()), policy)
    slots = [slot(k) for k in range(1, len(group) + 1)]
    rankings = {user: ranking_of(v.get(RANKING)) for user, v in values if votes[user] == "keep"}
    unranked = [u for u, r in rankings.items() if r is None or not set(slots) <= set(r)]
    if decision is None or (decision == "keep" and unranked):
        reason = ("no decision in a submitted response" if bad else f"annotators disagree ({policy})"
                  if decision is None else "no ranking in a kept response")
        out.disputed.extend(ledger.log(c, "dispute", reason, detail) for c in group)
        return
    if decision == "discard":
        for candidate in group:
            ledger.drop(candidate, "discarded by review", detail)
        out.discarded += len(group)
        return
    # Each annotator's ranks over the real candidates only (an empty slot is ignored), as competition ranks.
    ranks = {u: {a: 1 + sum(r[b] < r[a] for b in slots) for a in slots} for u, r in rankings.items()}
    points = borda(list(ranks.values()), slots)
    mean_rank = {a: sum(r[a] for r in ranks.values()) / len(ranks) for a in slots}
    position = {a: 1 + sum(points[b] > points[a] for b in slots) for a in slots}
    tied = [[a for a in slots if points[a] == p] for p in sorted(set(points.values()), reverse=True)]
    tied = [t for t in tied if len(t) > 1]
    split = []
    for i, a in enumerate(slots):
        for b in slots[i + 1:]:
            prefer_a = sum(r[a] < r[b] for r in ranks.values())
            prefer_b = sum(r[b] < r[a] for r in ranks.values())
            if prefer_a and prefer_b:
                split.append([a, b, prefer_a, prefer_b])
    taus = [kendall_tau([ranks[u][a] for a in slots], [ranks[v][a] for a in slots])
            for i, u in enumerate(sorted(ranks)) for v in sorted(ranks)[i + 1:]]
    taus = [t for t in taus if t is not None]
    detail = {**detail, "rankings": ranks, "borda": points, "mean_rank": mean_rank, "positions": position,
              "tied": tied, "split_pairs": split, "kendall_tau_mean": sum(taus) / len(taus) if taus else None,
              **_means(questions, values)}
    # A comparison has no record to correct: of the other questions, only their answers are kept.
    _, _, answered = _settle(questions, group[0], [v for user, v in values if votes[user] == "keep"], detail)
    if answered:
        detail["answers"] = answered
    out.ranked_groups += 1
    out.tied_groups += bool(tied)
    out.split_pairs += len(split)
    for a, candidate in zip(slots, group):
        ranking = {"slot": a, "position": position[a], "of": len(slots), "mean_rank": mean_rank[a],
                   "borda": points[a], "ranks": {users.get(u) or u: r[a] for u, r in ranks.items()}}
        scores = {**candidate.scores, "review_mean_rank": round(mean_rank[a], 4), "review_borda": points[a]}
        out.curated.append(ledger.log(candidate, "rank", "ranked by review", detail, scores=scores,
                                      meta={**candidate.meta, "ranking": ranking}))

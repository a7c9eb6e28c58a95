"""The lecturer's view of a class review: per student, what they did and how their votes compare with the class.

    class_progress(rows)     # rows: `annotate export` rows, or the server's (`annotation.agreement.server_rows`)

Per student: submitted, discarded (the Discard button, or *discard* submitted: both are discard votes, as in the
pull), drafts; agreement with the majority of the *others* on the records both answered (a tie among the others is
left out), and Cohen's kappa of the student's decisions against that majority; seconds per record (the median gap
between their consecutive answers, gaps over ten minutes counted as breaks). A student is flagged when far below
the class: agreement more than 0.25 under the class median, or under a third of the class's median seconds per
record (answers too fast to have read the record) — a reason to look, never a verdict.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from annotation.agreement import cohen_kappa
from annotation.questions import DECISION, DECISIONS

BREAK_SECONDS = 600.0  # a longer gap between two answers is a pause, not time spent on a record
FAR_BELOW_AGREEMENT = 0.25
TOO_FAST_SHARE = 1 / 3


@dataclass
class StudentProgress:
    username: str
    submitted: int = 0
    discarded: int = 0
    drafts: int = 0
    compared: int = 0  # records where the others have a majority to compare with
    agreement: float | None = None
    kappa: float | None = None
    seconds_per_record: float | None = None
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _vote(response: dict) -> str | None:
    if response["status"] == "discarded":
        return "discard"
    if response["status"] == "submitted":
        value = (response.get("values") or {}).get(DECISION)
        return value if value in DECISIONS else None
    return None


def _when(response: dict) -> datetime | None:
    text = response.get("updated_at") or response.get("inserted_at")
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def class_progress(rows: list[dict]) -> list[StudentProgress]:
    """Every student who answered a record of ROWS, in username order (see the module's note)."""
    students: dict[str, StudentProgress] = {}
    votes: dict[str, dict[str, str]] = {}  # record -> user -> keep/discard
    times: dict[str, list[datetime]] = {}
    for row in rows:
        for response in row.get("responses") or []:
            user = response.get("username") or str(response["user_id"])
            student = students.setdefault(user, StudentProgress(user))
            status = response["status"]
            student.submitted += status == "submitted"
            student.discarded += status == "discarded"
            student.drafts += status == "draft"
            vote = _vote(response)
            if vote is not None:
                votes.setdefault(row["id"], {})[user] = vote
                if (when := _when(response)) is not None:
                    times.setdefault(user, []).append(when)
    for user, student in students.items():
        mine, majority = [], []
        for record_votes in votes.values():
            if user not in record_votes:
                continue
            others = Counter(v for u, v in record_votes.items() if u != user).most_common()
            if not others or (len(others) > 1 and others[0][1] == others[1][1]):
                continue  # no other vote, or the others are split: nothing to agree with
            mine.append(record_votes[user])
            majority.append(others[0][0])
        student.compared = len(mine)
        if mine:
            student.agreement = sum(a == b for a, b in zip(mine, majority)) / len(mine)
            student.kappa = cohen_kappa(mine, majority)
        stamps = sorted(times.get(user, []))
        gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
        gaps = [g for g in gaps if 0 <= g <= BREAK_SECONDS]
        student.seconds_per_record = statistics.median(gaps) if gaps else None
    agreements = [s.agreement for s in students.values() if s.agreement is not None]
    paces = [s.seconds_per_record for s in students.values() if s.seconds_per_record is not None]
    for student in students.values():
        if len(agreements) >= 3 and student.agreement is not None \
                and student.agreement < statistics.median(agreements) - FAR_BELOW_AGREEMENT:
            student.flags.append(f"agrees with the others on {student.agreement:.0%} of records (class median "
                                 f"{statistics.median(agreements):.0%})")
        if len(paces) >= 3 and student.seconds_per_record is not None \
                and student.seconds_per_record < statistics.median(paces) * TOO_FAST_SHARE:
            student.flags.append(f"{student.seconds_per_record:.1f} s per record (class median "
                                 f"{statistics.median(paces):.1f} s)")
    return [students[name] for name in sorted(students)]

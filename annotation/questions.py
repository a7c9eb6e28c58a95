"""The review's questions, each declared once: its name, kind, title, options and what a pull does with its answers.

    Question("quality", "rating", "Quality (1 poor - 5 excellent)", options=(1, 2, 3, 4, 5), mean_as="review_quality")

A question's *kind* is an entry in a registry (`register_kind`): how a question of that kind becomes an Argilla
question, how a pulled answer is read, how annotators' agreement on it is measured and what a demo reviewer answers
to it. A question of an unknown kind is an error (`UnknownQuestionKind`, naming the known ones), never quietly a text
question. Adding a kind is one `register_kind(QuestionKind(...))` here, plus its test.

The questions are three sets: REVIEW_QUESTIONS (keep, discard or correct a record), COMPARE_QUESTIONS (rank a group
of candidates), `questions_for(compare)` picks one of those; and SUITE_QUESTIONS (keep or discard a drafted eval
question, say whether its page answers it, correct it or its reference), which `eval_suites.draft` passes.
Everything else reads them from here: `annotation.client` (the dataset's Argilla settings, the check of an existing
dataset), `annotation.votes` (what a pull does with each answer), `annotation.agreement` (which answers are compared,
and how), `annotation.demo_reviewer` (what its accounts answer).
The search engine (`annotation/argilla_engine.py`, inside argilla-server) needs nothing from a kind: it filters and
sorts the stored answers of any Argilla question type by their values (a terms filter matches a value or any item of
a list, a range filter and a sort read numbers), so a new kind whose Argilla question stores plain values or lists
of them is searchable as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from workbench.core.errors import ConfigError
from workbench.core.records import CATEGORIES
from workbench.core.text import restore_hidden

DECISION, CATEGORY, RANKING = "decision", "category", "ranking"  # the questions a pull treats by name
ON_THE_PAGE = "on_the_page"  # a suite question's: does its page answer it
PAGE_ANSWERS = ("answered", "not on the page")
DECISIONS = ("keep", "discard")
EMPTY_SLOT = "(no candidate in this slot: rank it last; it is left out of the result)"


class UnknownQuestionKind(ConfigError):
    """A question of a kind the registry does not know."""


def slot(k: int) -> str:
    """The field (and ranking option) of a comparison's k-th candidate, from 1."""
    return f"response_{k}"


def ranking_of(value: Any) -> dict[str, int] | None:
    """slot -> rank from a ranking answer (REST shape: [{"value": "response_1", "rank": 1}, ...])."""
    if not isinstance(value, list):
        return None
    ranks = {v.get("value"): v.get("rank") for v in value if isinstance(v, dict)}
    if not ranks or not all(isinstance(r, int) for r in ranks.values()):
        return None
    return ranks


def candidate_ranks(value: Any, row: dict) -> dict[str, int] | None:
    """slot -> competition rank among the row's real candidates (empty slots left out), from a ranking answer."""
    ranks = ranking_of(value)
    if ranks is None:
        return None
    fields = row.get("fields") or {}
    real = [k for k in ranks if fields.get(k) != EMPTY_SLOT]
    return {k: 1 + sum(ranks[j] < ranks[k] for j in real) for k in real}


@dataclass(frozen=True)
class Question:
    """One question annotators answer. What a pull does with a kept record's answers: the decision and the ranking
    by name (`annotation.votes`); `corrects`: the winning side's agreed answer replaces that Record attribute (a tie
    disputes the record, or with `on_tie="keep"` keeps the record's own and notes the tie); `mean_as`: the mean of
    every numeric answer is kept under that name (a review: a score, 3 decimals; a comparison: in the ranking's
    detail); any other question: the winning side's agreed answer goes into the lineage's detail under "answers"."""

    name: str
    kind: str  # a registered QuestionKind's name
    title: str
    required: bool = False
    options: tuple = ()  # labels or values; a ranking's options are the comparison's slots
    corrects: str | None = None
    on_tie: Literal["dispute", "keep"] = "dispute"
    mean_as: str | None = None

    def __post_init__(self) -> None:
        kind_of(self.kind)  # an unknown kind is refused where the question is declared

    @property
    def kind_spec(self) -> QuestionKind:
        return kind_of(self.kind)


def _as_given(value: Any, *_: Any) -> Any:
    return value


def _no_answer(question: Question, style: str, texts: dict, metadata: dict) -> Any:
    return None


@dataclass(frozen=True)
class AgreementRule:
    """How annotators' agreement on a kind's answers is measured (`annotation.agreement` computes it)."""

    level: str  # Krippendorff's alpha level of measurement: nominal, ordinal, interval
    pairwise: Literal["cohen_kappa", "kendall_tau"] = "cohen_kappa"  # per pair of annotators (tau: mean per record)
    answer: Callable[[Any, dict], Any] = _as_given  # (answer, export row) -> what is compared
    per_candidate: bool = False  # alpha over every (record, candidate) rank instead of every record
    always_reported: bool = True  # False: left out of the report when no record has two answers


@dataclass(frozen=True)
class QuestionKind:
    """What the workbench knows of one kind of question."""

    name: str
    # (the argilla module, the question, a comparison's number of slots or None) -> the argilla SDK's question
    argilla: Callable[[Any, Question, int | None], Any]
    read: Callable[[Any], Any] = _as_given  # a pulled answer (its REST value) as a pull compares it
    agreement: AgreementRule | None = None  # None: agreement is not measured
    # (question, reviewer style, texts, metadata) -> a demo reviewer's answer where its own rules have none (None:
    # left unanswered); the built-in questions are answered by the rules of `annotation.demo_reviewer`
    demo: Callable[[Question, str, dict, dict], Any] = _no_answer


_KINDS: dict[str, QuestionKind] = {}


def register_kind(kind: QuestionKind) -> QuestionKind:
    """Make a kind known (refuses a name already taken)."""
    if kind.name in _KINDS:
        raise ConfigError(f"question kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    _KINDS.pop(name, None)


def kind_of(name: str) -> QuestionKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownQuestionKind(f"unknown question kind {name!r}: the known kinds are {', '.join(_KINDS)}",
                                  hint="register it with annotation.questions.register_kind") from None


def kinds() -> tuple[QuestionKind, ...]:
    """The registered kinds, in the order they were registered."""
    return tuple(_KINDS.values())


def _text(value: Any) -> Any:
    # a marker copied from the shown text (⟦U+202E⟧) is the character it stands for
    return restore_hidden(value.strip()) if isinstance(value, str) else value


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) else None


register_kind(QuestionKind(
    "label", lambda rg, q, slots: rg.LabelQuestion(q.name, labels=list(q.options), title=q.title,
                                                   required=q.required),
    agreement=AgreementRule("nominal")))
register_kind(QuestionKind(
    "rating", lambda rg, q, slots: rg.RatingQuestion(q.name, values=list(q.options), title=q.title,
                                                     required=q.required),
    read=_number, agreement=AgreementRule("ordinal")))
register_kind(QuestionKind(
    "text", lambda rg, q, slots: rg.TextQuestion(q.name, title=q.title, required=q.required, use_markdown=False),
    read=_text))
register_kind(QuestionKind(
    "ranking", lambda rg, q, slots: rg.RankingQuestion(q.name, values={slot(k): f"Response {k}"
                                                                       for k in range(1, slots + 1)},
                                                       title=q.title, required=q.required),
    read=ranking_of,
    agreement=AgreementRule("ordinal", "kendall_tau", candidate_ranks, per_candidate=True, always_reported=False)))

REVIEW_QUESTIONS = (  # every question the review of a record asks, in the order annotators see them
    Question(DECISION, "label", "Keep or discard this record?", True, DECISIONS),
    Question("quality", "rating", "Quality (1 poor - 5 excellent)", False, (1, 2, 3, 4, 5), mean_as="review_quality"),
    Question(CATEGORY, "label", "Category", False, CATEGORIES, corrects="category", on_tie="keep"),
    Question("corrected_instruction", "text", "Corrected instruction (optional)", corrects="instruction"),
    Question("corrected_response", "text", "Corrected response (optional)", corrects="response"),
)
COMPARE_QUESTIONS = (  # asked of each group of candidates
    Question(DECISION, "label",
             "Keep or discard this comparison? (discard: the instruction or every response is unusable)", True,
             DECISIONS),
    Question(RANKING, "ranking", "Rank the responses (1 = best; equal ranks for equally good ones)", True),
    Question("quality", "rating", "Quality of the best response (1 poor - 5 excellent)", False, (1, 2, 3, 4, 5),
             mean_as="best_quality"),
)


SUITE_QUESTIONS = (  # asked of each drafted eval question (`workbench eval suite draft`; a recipe's suite review)
    Question(DECISION, "label", "Keep this question in the suite? (discard: unclear, wrong, or not worth asking)",
             True, DECISIONS),
    Question(ON_THE_PAGE, "label", "Does the page answer it?", True, PAGE_ANSWERS),
    Question("corrected_instruction", "text", "Corrected question (optional)", corrects="instruction"),
    Question("corrected_response", "text", "Corrected reference answer (optional: the shortest answer that is right)",
             corrects="response"),
)


def questions_for(compare: bool) -> tuple[Question, ...]:
    return COMPARE_QUESTIONS if compare else REVIEW_QUESTIONS


def both_sets(questions: tuple[Question, ...] | None = None) -> tuple[Question, ...]:
    """`questions`, or those of both sets, once by name (as an export of either kind of dataset answers them)."""
    by_name: dict[str, Question] = {}
    for question in questions if questions is not None else REVIEW_QUESTIONS + COMPARE_QUESTIONS:
        by_name.setdefault(question.name, question)
    return tuple(by_name.values())


def measured(questions: tuple[Question, ...] | None = None) -> list[Question]:
    """The questions whose agreement is measured (`both_sets`), grouped by kind in the registry's order: labels,
    then ratings, then rankings."""
    order = [k.name for k in kinds()]
    return sorted((q for q in both_sets(questions) if q.kind_spec.agreement is not None),
                  key=lambda q: order.index(q.kind))

"""Review questions declared once (`annotation.questions`): every question's kind is in the registry, an unknown kind
is an error, and a kind added through the registry alone reaches the Argilla settings, the demo reviewers, the pull
and the agreement. No server: the Argilla SDK's objects are built offline, responses are written by hand in the REST
shape the client reads."""

from unittest import mock

import pytest

from annotation.agreement import agreement, to_dict
from annotation.client import dataset_settings
from annotation.demo_reviewer import REVIEWERS, answers_of
from annotation.mapping import export_rows, record_item, texts_of
from annotation.questions import (
    COMPARE_QUESTIONS,
    REVIEW_QUESTIONS,
    AgreementRule,
    Question,
    QuestionKind,
    UnknownQuestionKind,
    kind_of,
    kinds,
    measured,
    questions_for,
    register_kind,
    unregister_kind,
)
from annotation.votes import resolve
from workbench.core.errors import ConfigError
from workbench.core.ledger import Ledger
from workbench.core.records import Record


@pytest.fixture
def offline_argilla():
    """The SDK's question objects ask for a default client (which connects when made): a stand-in, restored after."""
    import argilla as rg

    saved = rg.Argilla._default_client
    rg.Argilla._default_client = mock.MagicMock()
    yield rg
    rg.Argilla._default_client = saved


def test_every_question_has_a_kind_the_client_knows(offline_argilla):
    for compare in (False, True):
        asked = questions_for(compare)
        assert {q.kind for q in asked} <= {k.name for k in kinds()}
        made = dataset_settings(compare_slots=3 if compare else None).serialize()["questions"]
        assert [q["name"] for q in made] == [q.name for q in asked]
        for question, argilla_question in zip(asked, made):
            # Each is what its own kind makes: none falls back to a text question.
            own = kind_of(question.kind).argilla(offline_argilla, question, 3).serialize()
            assert argilla_question == own and (own["type"] == "text") == (question.kind == "text")
            assert (argilla_question["title"], argilla_question["required"]) == (question.title, question.required)


def test_an_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(UnknownQuestionKind, match=r"unknown question kind 'slider': the known kinds are label, "
                                                  r"rating, text, ranking") as refused:
        Question("mood", "slider", "How do you feel?")
    assert isinstance(refused.value, ConfigError) and "register_kind" in refused.value.hint
    with pytest.raises(UnknownQuestionKind):
        kind_of("slider")
    with pytest.raises(ConfigError, match="already registered"):
        register_kind(QuestionKind("label", argilla=lambda rg, q, slots: None))


def test_agreement_is_measured_on_labels_then_ratings_then_rankings_never_on_texts():
    assert [q.name for q in measured()] == ["decision", "category", "quality", "ranking"]
    assert {q.name for q in REVIEW_QUESTIONS + COMPARE_QUESTIONS if q.kind == "text"}.isdisjoint(
        q.name for q in measured())


# --- a toy kind, added through the registry alone ----------------------------------------------------------------

TAG_STYLE = {"strict": ["terse"], "lenient": ["friendly", "long"], "grounded": ["cites-context"]}


@pytest.fixture
def tags():
    """A multi-label kind (no built-in question uses Argilla's MultiLabelQuestion) and a review that asks it."""
    register_kind(QuestionKind(
        "tags",
        argilla=lambda rg, q, slots: rg.MultiLabelQuestion(q.name, labels=list(q.options), title=q.title,
                                                           required=q.required),
        read=lambda value: tuple(sorted(value)) if isinstance(value, list) else None,
        agreement=AgreementRule("nominal", answer=lambda value, row: tuple(sorted(value))),
        demo=lambda question, style, texts, metadata: TAG_STYLE[style]))
    question = Question("tone", "tags", "Tone of the response", options=("terse", "friendly", "long", "cites-context"))
    yield REVIEW_QUESTIONS + (question,)
    unregister_kind("tags")


def test_a_kind_added_through_the_registry_reaches_the_argilla_settings(tags, offline_argilla):
    made = dataset_settings(questions=tags).serialize()["questions"]
    assert [q["name"] for q in made] == [q.name for q in tags]
    tone = made[-1]
    assert tone["type"] == "multi_label_selection" and tone["title"] == "Tone of the response"
    assert [o["value"] for o in tone["settings"]["options"]] == ["terse", "friendly", "long", "cites-context"]
    assert made[:-1] == dataset_settings().serialize()["questions"]  # the built-in questions are untouched


def pushed_item(record: Record, answers: dict[str, dict]) -> dict:
    """A server record as `annotation.client.fetch` returns it (REST shape), with each user's submitted answers."""
    pushed = record_item(record)
    return {"id": f"server-{record.id}", "external_id": record.id, "status": "completed", "fields": pushed["fields"],
            "metadata": pushed["metadata"],
            "responses": [{"user_id": user, "status": "submitted", "updated_at": f"2026-12-01T10:0{k}:00",
                           "values": {q: {"value": v} for q, v in values.items()}}
                          for k, (user, values) in enumerate(answers.items())]}


RECORD = Record("Which course teaches statistics?", response="Statistics 101 teaches it, with exercises in R.",
                category="open_qa", meta={"screen_route": "pass"})


def test_a_kind_added_through_the_registry_is_answered_by_the_demo_reviewers_and_pulled(tags):
    item = pushed_item(RECORD, {})
    answers = {username: answers_of(style, texts_of(item), item["metadata"], tags) for username, style in REVIEWERS}
    assert {username: a["tone"] for username, a in answers.items()} == {
        "demo-reviewer-1": ["terse"], "demo-reviewer-2": ["friendly", "long"], "demo-reviewer-3": ["cites-context"]}
    without = {username: answers_of(style, texts_of(item), item["metadata"]) for username, style in REVIEWERS}
    assert {u: {k: v for k, v in a.items() if k != "tone"} for u, a in answers.items()} == without

    # The pull: the winning side's agreed answer is kept with the votes; a tie among them disputes the record.
    agreeing = pushed_item(RECORD, {"u1": {"decision": "keep", "tone": ["long", "friendly"]},
                                    "u2": {"decision": "keep", "tone": ["friendly", "long"]},
                                    "u3": {"decision": "discard", "tone": ["terse"]}})
    split = pushed_item(Record("Another question?", response="Another answer."),
                        {"u1": {"decision": "keep", "tone": ["terse"]}, "u2": {"decision": "keep", "tone": ["long"]}})
    ledger = Ledger("review")
    pulled, problems = resolve([agreeing, split], "majority", ledger, questions=tags)
    [kept] = pulled.curated
    assert not problems and kept.id == RECORD.id and kept.lineage[-1]["detail"]["answers"] == {
        "tone": ("friendly", "long")}
    [disputed] = pulled.disputed
    assert disputed.lineage[-1]["reason"] == "conflicting tone"
    # Without the question in the set, the answers change nothing.
    plain, _ = resolve([agreeing, split], "majority", Ledger("review"))
    assert "answers" not in plain.curated[0].lineage[-1]["detail"] and len(plain.curated) == 2

    # Agreement: measured by the kind's rule, after the built-in kinds.
    rows = list(export_rows([agreeing, split], {"u1": "ann", "u2": "bob", "u3": "cy"}))
    report = {q["question"]: q for q in to_dict(agreement(rows, tags))["questions"]}
    assert list(report) == ["decision", "category", "quality", "tone"]
    assert report["tone"]["records"] == 2 and report["tone"]["percent_agreement"] == pytest.approx((1 / 3 + 0) / 2)


def test_an_unregistered_kind_is_unknown_again(tags, offline_argilla):
    unregister_kind("tags")
    with pytest.raises(UnknownQuestionKind):
        dataset_settings(questions=tags)
    register_kind(QuestionKind("tags", argilla=lambda rg, q, slots: None))  # for the fixture's teardown

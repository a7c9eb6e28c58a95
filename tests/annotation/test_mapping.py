"""Record <-> Argilla as plain data, without a server: what annotators see, what is suggested, what comes back."""

import json

from annotation.mapping import (
    QUESTIONS,
    RECORD_KEY,
    export_rows,
    fields_of,
    metadata_of,
    record_of,
    suggestions_of,
)
from workbench.core.records import Record

SCREENED = Record("Which course suits a statistician?", "Page text.", "Data Science.", category="open_qa",
                  source="generated", scores={"toxicity_max": 0.03},
                  meta={"screen_route": "pass", "screen_scorer": "profanity-check", "dedup_cluster_size": 2,
                        "model": "tiny", "round": 1},
                  lineage=[{"stage": "bootstrap", "action": "create", "reason": None,
                            "detail": {"method": "model"}, "run": None}])


def test_fields_are_the_three_texts_and_the_whole_record_rides_in_hidden_metadata():
    assert fields_of(SCREENED) == {"instruction": SCREENED.instruction, "context": "Page text.",
                                   "response": "Data Science."}
    metadata = metadata_of(SCREENED)
    assert {k: v for k, v in metadata.items() if k != RECORD_KEY} == {
        "toxicity_max": 0.03, "screen_route": "pass", "dedup_cluster_size": 2, "source": "generated",
        "model": "tiny", "round": 1}
    assert Record.from_dict(json.loads(metadata[RECORD_KEY])) == SCREENED


def test_missing_metadata_is_left_out_not_sent_empty():
    assert set(metadata_of(Record("Q?"))) == {"source", RECORD_KEY}


def test_suggestions_the_screen_and_the_category():
    decision, category = suggestions_of(SCREENED)
    assert decision == {"question": "decision", "value": "keep", "score": 0.97, "agent": "screen:profanity-check"}
    assert category == {"question": "category", "value": "open_qa", "score": None, "agent": "workbench:model"}
    routed = Record("Q?", scores={"toxicity_max": 0.4}, meta={"screen_route": "review"})
    assert suggestions_of(routed) == [{"question": "decision", "value": "discard", "score": 0.4,
                                       "agent": "screen:toxicity"}]
    assert suggestions_of(Record("Unscreened?")) == []


def test_every_question_has_a_kind_the_client_knows():
    assert [q[0] for q in QUESTIONS] == ["decision", "quality", "category", "corrected_instruction",
                                         "corrected_response"]
    assert {q[1] for q in QUESTIONS} <= {"label", "rating", "text"}


def test_record_of_gives_back_exactly_what_was_pushed():
    item = {"id": "s", "external_id": SCREENED.id, "fields": fields_of(SCREENED), "metadata": metadata_of(SCREENED)}
    assert record_of(item, []) == SCREENED
    problems: list[str] = []
    assert record_of({"id": "s2", "fields": {}}, problems) is None and "no instruction field" in problems[0]


def test_export_rows_keep_every_response_with_its_user_and_the_record():
    raw = [{"id": "s", "external_id": SCREENED.id, "status": "completed", "fields": fields_of(SCREENED),
            "metadata": metadata_of(SCREENED), "suggestions": [{"question_name": "decision", "value": "keep",
                                                                "score": 0.97, "agent": "screen", "id": "x"}],
            "responses": [{"user_id": "u1", "status": "draft", "values": {"decision": {"value": "discard"}},
                           "updated_at": "t1"}]}]
    [row] = export_rows(raw, {"u1": "ann"})
    assert row["id"] == SCREENED.id and row["record"]["id"] == SCREENED.id and RECORD_KEY not in row["metadata"]
    assert row["responses"] == [{"user_id": "u1", "username": "ann", "status": "draft",
                                 "values": {"decision": "discard"}, "inserted_at": None, "updated_at": "t1"}]
    assert row["suggestions"] == [{"question_name": "decision", "value": "keep", "score": 0.97, "agent": "screen"}]

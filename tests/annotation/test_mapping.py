"""Record <-> Argilla as plain data, without a server: what annotators see, what is suggested, what comes back."""

import html
import json

import pytest

from annotation.mapping import (
    GUIDELINES,
    METADATA,
    RECORD_KEY,
    export_rows,
    fields_of,
    metadata_of,
    record_item,
    record_of,
    screen_reasons,
    shown,
    suggestions_of,
)
from workbench.core.records import Record

SCREENED = Record("Which course suits a statistician?", "Page text.", "Data Science.", category="open_qa",
                  source="generated", scores={"toxicity_max": 0.0312345},
                  meta={"screen_route": "pass", "screen_scorer": "profanity-check", "dedup_cluster_size": 2,
                        "model": "tiny", "round": 1},
                  lineage=[{"stage": "bootstrap", "action": "create", "reason": None,
                            "detail": {"method": "model"}, "run": None}])


def test_fields_are_the_three_texts_and_the_rest_of_the_record_rides_in_hidden_metadata():
    assert fields_of(SCREENED) == {"instruction": SCREENED.instruction, "context": "Page text.",
                                   "response": "Data Science."}
    metadata = metadata_of(SCREENED)
    # Floats rounded to 4 decimals: the server reports a range rounded to 5, so the slider's ends include them.
    assert {k: v for k, v in metadata.items() if k != RECORD_KEY} == {
        "record_id": SCREENED.id, "toxicity_max": 0.0312, "screen_route": "pass", "dedup_cluster_size": 2,
        "source": "generated", "model": "tiny", "round": 1}
    hidden = json.loads(metadata[RECORD_KEY])
    assert not {"instruction", "context", "response"} & set(hidden) and hidden["scores"]["toxicity_max"] == 0.0312345
    assert len(metadata[RECORD_KEY]) < len(SCREENED.to_json())


HOSTILE = ["List<String> names = new ArrayList<>();", "std::vector<int>", "a<b and c>d", "Explain the <think> tag.",
           "<script>alert(localStorage.getItem('auth._token.local'))</script>", '<img src=x onerror="alert(1)">',
           "&amp; is an &-sign; &lt;b&gt; &#60; &unknown", "**not bold** # not a heading\n\tindented  twice",
           "</div><iframe src=javascript:alert(1)>", ""]


@pytest.mark.parametrize("text", HOSTILE)
def test_fields_carry_no_markup_and_come_back_exactly(text):
    record = Record(text or "Q?", context=text, response=text)
    fields = fields_of(record)
    assert all("<" not in v and ">" not in v for v in fields.values())  # nothing a browser can parse as a tag
    assert html.unescape(shown(text)) == text
    item = {"id": "s", "external_id": record.id, "fields": fields, "metadata": metadata_of(record)}
    assert record_of(item, []) == record
    [row] = export_rows([item], {})
    assert row["record"] == record.to_dict() and row["fields"]["response"] == text


def test_missing_metadata_is_left_out_not_sent_empty():
    record = Record("Q?")
    assert metadata_of(record).keys() == {"record_id", "source", RECORD_KEY}


def test_a_decision_is_suggested_only_where_the_screen_was_confident():
    decision, category = suggestions_of(SCREENED)
    assert decision == {"question": "decision", "value": "keep", "score": 0.9688, "agent": "screen:profanity-check"}
    assert category == {"question": "category", "value": "open_qa", "score": None, "agent": "workbench:model"}
    rejected = Record("Q?", scores={"toxicity_max": 0.9}, meta={"screen_route": "reject"})
    assert suggestions_of(rejected) == [{"question": "decision", "value": "discard", "score": 0.9,
                                         "agent": "screen:toxicity"}]
    # Unsure: no pre-selected decision (pressing Submit must not vote), the reason is in the metadata instead.
    reasons = ["toxicity: insult", "personal data: email"]
    routed = Record("Q?", scores={"toxicity_max": 0.4}, meta={"screen_route": "review", "pii": {"email": ["a@b.c"]},
                                                              "screen_reasons": reasons})
    assert suggestions_of(routed) == []
    assert metadata_of(routed)["screen_reason"] == ["toxicity: insult", "personal data: email"]
    assert suggestions_of(Record("Unscreened?")) == []


def test_screen_reasons_of_records_screened_before_the_reasons_were_kept():
    old = Record("Q?", scores={"toxicity_max": 0.3, "toxicity_response_severe_toxicity": 0.3,
                               "toxicity_context_insult": 0.2}, meta={"screen_route": "review", "pii": {"phone": []}})
    assert screen_reasons(old) == ["toxicity: severe_toxicity", "personal data: phone"]
    assert screen_reasons(SCREENED) == []


def test_the_guidelines_explain_every_metadata_property_and_every_way_to_answer():
    for name, _, _ in METADATA:
        assert f"**{name}**" in GUIDELINES
    for word in ("Keep", "Discard", "Correct", "Category", "suggestion"):
        assert word in GUIDELINES


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
    assert row["record"] == SCREENED.to_dict() and RECORD_KEY not in row["metadata"]
    assert row["responses"] == [{"user_id": "u1", "username": "ann", "status": "draft",
                                 "values": {"decision": "discard"}, "inserted_at": None, "updated_at": "t1"}]
    assert row["suggestions"] == [{"question_name": "decision", "value": "keep", "score": 0.97, "agent": "screen"}]


def test_hidden_characters_are_shown_as_markers_and_come_back():
    from annotation.mapping import read_back, texts_of

    record = Record("Is invoice\u202egpj.exe <safe> & sound?", response="No\u200d.")
    item = record_item(record)
    assert item["fields"]["instruction"] == "Is invoice⟦U+202E⟧gpj.exe &lt;safe&gt; &amp; sound?"
    assert item["fields"]["response"] == "No⟦U+200D⟧."
    assert texts_of(item) == {"instruction": record.instruction, "context": "", "response": record.response}
    assert read_back("No⟦U+200D⟧.") == "No\u200d."


def test_a_correction_copied_with_the_copy_button_is_no_correction():
    """The UI's copy button copies the escaped text; pasted back unchanged it is the record's own text, and an edit of
    it keeps the record's characters."""
    from annotation.votes import resolve
    from workbench.core.ledger import Ledger

    record = Record("Which course covers <b>HTML</b> & CSS?", response="Web Design 1 covers it.")
    item = {**record_item(record), "external_id": record.id}

    def pulled(correction: str) -> Record:
        answers = [{"user_id": u, "status": "submitted", "updated_at": "2026-12-07",
                    "values": {"decision": {"value": "keep"}, "corrected_instruction": {"value": correction}}}
                   for u in ("a", "b")]
        out, problems = resolve([{**item, "responses": answers}], "majority", Ledger("review"), min_submitted=2)
        assert not problems
        return out.curated[0]

    copied = item["fields"]["instruction"]  # what the copy button gives: &lt;b&gt;HTML&lt;/b&gt; &amp; CSS
    same = pulled(copied)
    assert same.instruction == record.instruction and same.lineage[-1]["action"] == "keep"
    edited = pulled(copied.replace("covers", "teaches"))
    assert edited.instruction == "Which course teaches <b>HTML</b> & CSS?" and edited.lineage[-1]["action"] == "edit"

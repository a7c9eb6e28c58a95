"""Vote resolution without a server: records as the REST API returns them, resolved by each policy."""

import pytest

from annotation.client import ReviewError
from annotation.mapping import RECORD_KEY, fields_of, metadata_of
from annotation.votes import agreed, resolve, vote
from workbench.core.ledger import Ledger
from workbench.core.records import Record


def item(record: Record, *responses, status: str = "completed") -> dict:
    """A server record with the pushed Record in its metadata and the given (user, values, status) responses."""
    return {"id": f"server-{record.id}", "external_id": record.id, "status": status,
            "fields": fields_of(record), "metadata": metadata_of(record),
            "responses": [{"user_id": user, "status": state, "updated_at": f"2026-12-01T10:0{k}:00",
                           "values": {q: {"value": v} for q, v in values.items()}}
                          for k, (user, values, state) in enumerate(responses)]}


def submitted(user: str, **values) -> tuple:
    return user, values, "submitted"


RECORD = Record("Which course suits a statistician?", response="Data Science. ", category="open_qa")


@pytest.mark.parametrize("decisions, policy, expected", [
    (["keep", "keep", "discard"], "majority", "keep"),
    (["keep", "discard"], "majority", None),
    (["discard", "discard", "keep"], "majority", "discard"),
    (["keep", "keep"], "unanimous", "keep"),
    (["keep", "discard"], "unanimous", None),
    (["keep", "keep", "discard"], "any-discard", "discard"),
    (["keep"], "any-discard", "keep"),
])
def test_vote(decisions, policy, expected):
    assert vote(decisions, policy) == expected


def test_agreed_ignores_empty_answers_and_refuses_a_tie():
    assert agreed([None, "", "a", "a", "b"]) == (True, "a")
    assert agreed(["a", "b"]) == (False, None)
    assert agreed([None, ""]) == (True, None)


def test_a_majority_keep_is_curated_with_votes_users_and_the_mean_rating():
    ledger = Ledger("review", "r")
    pulled, problems = resolve([item(RECORD, submitted("u1", decision="keep", quality=4),
                                     submitted("u2", decision="keep", quality=5),
                                     submitted("u3", decision="discard", quality=2))],
                               "majority", ledger, dataset="d", users={"u1": "ann", "u2": "bob", "u3": "cy"})
    [kept] = pulled.curated
    event = kept.lineage[-1]
    assert (event["stage"], event["action"], event["reason"], event["run"]) == ("review", "keep", "kept by review", "r")
    assert event["detail"]["users"] == {"u1": "ann", "u2": "bob", "u3": "cy"} and event["detail"]["dataset"] == "d"
    assert kept.scores["review_quality"] == pytest.approx(11 / 3, abs=1e-3) and not problems
    assert ledger.counts == {"keep: kept by review": 1}


def test_corrections_from_the_winning_side_are_edits_and_the_id_stays():
    ledger = Ledger("review")
    pulled, _ = resolve([item(RECORD, submitted("u1", decision="keep", corrected_response="Data Science MSc."),
                              submitted("u2", decision="keep", corrected_response=" Data Science MSc. "),
                              submitted("u3", decision="discard", corrected_response="Something else."))],
                        "majority", ledger)
    [edited] = pulled.curated
    assert edited.response == "Data Science MSc." and edited.id == RECORD.id
    assert edited.lineage[-1]["action"] == "edit" and edited.lineage[-1]["detail"]["original"] == {
        "response": RECORD.response}
    assert ledger.counts == {"edit: corrected by review": 1}


def test_discarded_records_are_dropped_through_the_ledger_and_ties_are_disputed():
    other = Record("Another question?", response="Another answer.")
    ledger = Ledger("review")
    pulled, _ = resolve([item(RECORD, submitted("u1", decision="discard"), submitted("u2", decision="discard")),
                         item(other, submitted("u1", decision="keep"), submitted("u2", decision="discard"))],
                        "majority", ledger)
    assert pulled.discarded == 1 and [r.id for r in ledger.dropped] == [RECORD.id]
    assert ledger.dropped[0].lineage[-1]["reason"] == "discarded by review"
    [disputed] = pulled.disputed
    assert disputed.id == other.id and disputed.lineage[-1]["reason"] == "annotators disagree (majority)"
    assert ledger.counts == {"drop: discarded by review": 1, "dispute: annotators disagree (majority)": 1}


def test_conflicting_corrections_and_missing_decisions_are_disputed():
    ledger = Ledger("review")
    pulled, _ = resolve([item(RECORD, submitted("u1", decision="keep", corrected_instruction="A?"),
                              submitted("u2", decision="keep", corrected_instruction="B?")),
                         item(Record("Q2?"), submitted("u1", quality=3))], "majority", ledger)
    assert [r.lineage[-1]["reason"] for r in pulled.disputed] == ["conflicting corrected_instruction",
                                                                  "no decision in a submitted response"]


def test_drafts_and_incomplete_records_are_pending_not_votes():
    pending = [item(RECORD, submitted("u1", decision="keep"), ("u2", {"decision": "discard"}, "draft"),
                    status="pending"),
               item(Record("Q2?"), ("u1", {"decision": "keep"}, "draft"))]
    pulled, _ = resolve(pending, "majority", Ledger("review"), min_submitted=2)
    assert pulled.pending == 2 and not pulled.curated and not pulled.disputed


def test_the_discard_button_is_a_discard_vote_and_completes_a_record():
    # The UI's Discard button stores status "discarded" with whatever the form held (here the suggested keep).
    button = ("u2", {"decision": "keep", "corrected_response": "typed before"}, "discarded")
    ledger = Ledger("review")
    pulled, _ = resolve([item(RECORD, submitted("u1", decision="discard"), button, status="pending"),
                         item(Record("Q2?"), submitted("u1", decision="keep"), button, status="pending"),
                         item(Record("Q3?"), button, status="pending")], "majority", ledger, min_submitted=2)
    assert pulled.discarded == 1 and len(pulled.disputed) == 1 and pulled.pending == 1
    [dropped] = ledger.dropped
    assert dropped.id == RECORD.id and dropped.lineage[-1]["detail"]["votes"] == {"u1": "discard", "u2": "discard"}
    assert pulled.disputed[0].lineage[-1]["detail"]["votes"] == {"u1": "keep", "u2": "discard"}


def test_a_category_difference_between_keep_votes_is_settled_by_majority_and_never_disputes():
    three = item(RECORD, submitted("u1", decision="keep", category="closed_qa"),
                 submitted("u2", decision="keep", category="closed_qa"), submitted("u3", decision="keep"))
    tie = item(Record("Q2?", category="open_qa"), submitted("u1", decision="keep", category="closed_qa"),
               submitted("u2", decision="keep", category="brainstorming"))
    only_category = item(Record("Q3?", category="open_qa"), submitted("u1", decision="keep", category="open_qa"),
                         submitted("u2", decision="keep", category="closed_qa", quality=4))
    pulled, _ = resolve([three, tie, only_category], "majority", Ledger("review"))
    assert not pulled.disputed and [r.category for r in pulled.curated] == ["closed_qa", "open_qa", "open_qa"]
    assert pulled.curated[0].lineage[-1]["reason"] == "corrected by review"
    # A tie keeps the record's own category, and the lineage says which categories tied.
    assert pulled.curated[1].lineage[-1]["detail"]["category_tie"] == ["brainstorming", "closed_qa"]
    assert pulled.curated[2].lineage[-1]["detail"]["category_tie"] == ["closed_qa", "open_qa"]


def test_since_keeps_back_what_was_pulled_with_the_same_responses():
    raw = [item(RECORD, submitted("u1", decision="keep"))]
    first, _ = resolve(raw, "majority", Ledger("review"))
    again, _ = resolve(raw, "majority", Ledger("review"), since=first.seen)
    assert len(first.curated) == 1 and again.unchanged == 1 and not again.curated


def test_a_record_pushed_by_another_tool_is_rebuilt_from_its_fields_and_a_broken_one_is_a_problem():
    vote_keep = {"user_id": "u1", "status": "submitted", "updated_at": "t", "values": {"decision": {"value": "keep"}}}
    foreign = {"id": "s1", "external_id": "ext-1", "status": "completed", "metadata": {"source": "elsewhere"},
               "fields": {"instruction": "Q?", "response": "A."}, "responses": [vote_keep]}
    broken = {**item(RECORD, submitted("u1", decision="keep")), "metadata": {RECORD_KEY: "{not json"}}
    pulled, problems = resolve([foreign, broken], "majority", Ledger("review"))
    [rebuilt] = pulled.curated
    assert (rebuilt.id, rebuilt.instruction, rebuilt.source) == ("ext-1", "Q?", "elsewhere")
    assert len(problems) == 1 and "cannot be read back" in problems[0]


def test_an_unknown_policy_is_an_error():
    with pytest.raises(ReviewError, match="unknown policy 'loudest'"):
        resolve([], "loudest", Ledger("review"))

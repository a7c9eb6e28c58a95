"""Comparisons without a server: candidates grouped into one server record, rankings resolved by the Borda count,
ties and split pairs reported, agreement on rankings."""

import pytest

from annotation.agreement import agreement, kendall_tau, to_dict
from annotation.mapping import compare_groups, compare_item, group_of
from annotation.questions import EMPTY_SLOT, ranking_of
from annotation.votes import borda, resolve
from workbench.core.errors import InputError
from workbench.core.ledger import Ledger
from workbench.core.records import Record


def group(key: str, responses: list[str]) -> list[Record]:
    return [Record("Which course teaches statistics?", context="", response=text, source="generated",
                   meta={"compare_group": key, "candidate": k, "generator": "original" if k == 0 else "tiny"})
            for k, text in enumerate(responses)]


def ranking(*slots_in_order) -> list[dict]:
    """A ranking answer as the REST API returns it: slots best first, a tuple for a shared rank."""
    out, rank = [], 1
    for entry in slots_in_order:
        for name in entry if isinstance(entry, tuple) else (entry,):
            out.append({"value": name, "rank": rank})
        rank += 1
    return out


def item(candidates: list[Record], slots: int, *responses) -> dict:
    pushed = compare_item(candidates, slots)
    return {"id": f"server-{pushed['id']}", "external_id": pushed["id"], "status": "completed",
            "fields": pushed["fields"], "metadata": pushed["metadata"],
            "responses": [{"user_id": user, "status": "submitted", "updated_at": f"2026-12-01T10:0{n}:00",
                           "values": {q: {"value": v} for q, v in values.items()}}
                          for n, (user, values) in enumerate(responses)]}


THREE = group("g1", ["Statistics 101 teaches it.", "STAT 200.", "Try the library."])


def test_a_group_is_one_record_with_a_field_per_candidate_and_comes_back_whole():
    pushed = compare_item(THREE + [], 4)
    assert pushed["id"] == "g1" and pushed["fields"]["response_2"] == "STAT 200."
    assert pushed["fields"]["response_4"] == EMPTY_SLOT and pushed["metadata"]["candidates"] == 3
    back = group_of({"external_id": "g1", "fields": pushed["fields"], "metadata": pushed["metadata"]}, [])
    assert [r.to_dict() for r in back] == [r.to_dict() for r in THREE]


def test_groups_refuse_what_is_not_candidates():
    with pytest.raises(InputError, match="no meta.compare_group"):
        compare_groups([Record("A question?", response="An answer.")])
    with pytest.raises(InputError, match="one candidate"):
        compare_groups(group("g2", ["Only one."]))
    assert [r.response for r in compare_groups(list(reversed(THREE)))[0]] == [r.response for r in THREE]


def test_borda_by_hand():
    # alice: 1 > 2 > 3; bob: 2 > 1 = 3. Points: 1: 2 + 0.5, 2: 1 + 2, 3: 0 + 0.5.
    ranks = [{"a": 1, "b": 2, "c": 3}, {"a": 2, "b": 1, "c": 2}]
    assert borda(ranks, ["a", "b", "c"]) == {"a": 2.5, "b": 3.0, "c": 0.5}


def test_rankings_resolve_to_positions_with_ties_and_split_pairs_reported():
    ledger = Ledger("review")
    raw = [item(THREE, 3, ("u1", {"decision": "keep", "ranking": ranking("response_1", "response_2", "response_3")}),
                ("u2", {"decision": "keep", "ranking": ranking("response_2", "response_1", "response_3")}),
                ("u3", {"decision": "discard", "ranking": ranking("response_3", "response_2", "response_1")}))]
    pulled, problems = resolve(raw, "majority", ledger, min_submitted=2, compare=True,
                               users={"u1": "alice", "u2": "bob"})
    assert not problems and pulled.ranked_groups == 1 and pulled.tied_groups == 1 and pulled.split_pairs == 1
    by_slot = {r.meta["ranking"]["slot"]: r for r in pulled.curated}
    # Only the keepers rank: 1 and 2 tie (one first place each), 3 is last for both.
    assert [by_slot[s].meta["ranking"]["position"] for s in ("response_1", "response_2", "response_3")] == [1, 1, 3]
    assert by_slot["response_1"].meta["ranking"]["ranks"] == {"alice": 1, "bob": 2}
    assert by_slot["response_3"].scores["review_mean_rank"] == 3.0
    detail = by_slot["response_1"].lineage[-1]["detail"]
    assert detail["tied"] == [["response_1", "response_2"]] and detail["split_pairs"] == [["response_1",
                                                                                         "response_2", 1, 1]]
    assert detail["kendall_tau_mean"] == pytest.approx(1 / 3)
    assert {r.id for r in pulled.curated} == {r.id for r in THREE} and ledger.counts["rank: ranked by review"] == 3


def test_an_empty_slot_is_left_out_and_a_discarded_or_disputed_group_keeps_all_its_candidates():
    two = group("g3", ["Yes.", "No, it is STAT 200."])
    ledger = Ledger("review")
    raw = [item(two, 3, ("u1", {"decision": "keep", "ranking": ranking("response_3", "response_2", "response_1")})),
           item(THREE, 3, ("u1", {"decision": "discard"}), ("u2", {"decision": "discard"})),
           item(group("g4", ["A.", "B."]), 2, ("u1", {"decision": "keep", "ranking": ranking("response_1",
                                                                                            "response_2")}),
                ("u2", {"decision": "discard"}))]
    pulled, _ = resolve(raw, "majority", ledger, compare=True)
    positions = {r.response: r.meta["ranking"]["position"] for r in pulled.curated}
    assert positions == {"No, it is STAT 200.": 1, "Yes.": 2}  # the empty slot ranked first changes nothing
    assert pulled.discarded == 3 and len(ledger.dropped) == 3
    assert len(pulled.disputed) == 2 and pulled.disputed[0].lineage[-1]["reason"] == "annotators disagree (majority)"


def test_a_kept_comparison_without_a_ranking_is_disputed():
    pulled, _ = resolve([item(THREE, 3, ("u1", {"decision": "keep"}))], "majority", Ledger("review"), compare=True)
    assert len(pulled.disputed) == 3 and pulled.disputed[0].lineage[-1]["reason"] == "no ranking in a kept response"


def test_ranking_of_reads_the_rest_shape_and_refuses_others():
    assert ranking_of(ranking("response_2", ("response_1", "response_3"))) == {"response_2": 1, "response_1": 2,
                                                                              "response_3": 2}
    assert ranking_of("response_1") is None and ranking_of([{"value": "response_1", "rank": None}]) is None


def test_agreement_on_rankings_kendall_tau_by_hand_and_alpha():
    def row(rid, **rankings):
        return {"id": rid, "fields": {"response_1": "a", "response_2": "b", "response_3": EMPTY_SLOT},
                "responses": [{"user_id": u, "username": u, "status": "submitted",
                               "values": {"decision": "keep", "ranking": r}} for u, r in rankings.items()]}

    rows = [row("r1", alice=ranking("response_1", "response_2", "response_3"),
                bob=ranking("response_1", "response_3", "response_2")),  # the empty slot's place does not count
            row("r2", alice=ranking("response_1", "response_2", "response_3"),
                bob=ranking("response_2", "response_1", "response_3"))]
    result = {q["question"]: q for q in to_dict(agreement(rows))["questions"]}
    ranked = result["ranking"]
    assert ranked["records"] == 2 and ranked["percent_agreement"] == 0.5
    # r1: identical order of the real candidates (tau 1), r2: reversed (tau -1): mean 0.
    assert ranked["kendall_tau"] == [{"annotators": ["alice", "bob"], "records": 2, "mean_tau": 0.0}]
    assert ranked["krippendorff_alpha"] is not None and ranked["krippendorff_alpha"] < 0.5
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0) and kendall_tau([1, 1], [1, 2]) is None

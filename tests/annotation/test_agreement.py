"""Inter-annotator agreement without a server, on export rows written by hand (values checked by hand)."""

import json

import pytest

from annotation.agreement import agreement, cohen_kappa, read_export, to_dict


def row(record_id: str, **answers) -> dict:
    """An export row: each annotator's submitted answers (a draft when the value is a tuple ('draft', answers))."""
    responses = []
    for user, values in answers.items():
        status, values = values if isinstance(values, tuple) else ("submitted", values)
        responses.append({"user_id": f"id-{user}", "username": user, "status": status, "values": values})
    return {"id": record_id, "responses": responses}


ROWS = [
    row("r1", a={"decision": "keep", "quality": 4}, b={"decision": "keep", "quality": 5}),
    row("r2", a={"decision": "keep"}, b={"decision": "discard"}),
    row("r3", a={"decision": "discard"}, b={"decision": "discard"}, c={"decision": "keep"}),
    row("r4", a={"decision": "keep", "corrected_response": "Fixed."}, b=("draft", {"decision": "keep"})),
]


def test_cohen_kappa_by_hand_and_where_it_is_undefined():
    # p_o = 3/4; a says keep 3 times of 4, b 2 times: p_e = (3*2 + 1*2) / 16 = 1/2; kappa = (3/4 - 1/2) / (1/2)
    assert cohen_kappa(["k", "k", "d", "k"], ["k", "d", "d", "k"]) == pytest.approx(0.5)
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["k", "k"], ["k", "k"]) is None  # chance agreement is 1


def test_percent_agreement_kappa_per_pair_and_counts_per_annotator():
    result = to_dict(agreement(ROWS))
    decision = result["questions"][0]
    # Records with two or more submitted decisions: r1 (1 of 1 pairs agree), r2 (0 of 1), r3 (1 of 3).
    assert decision["records"] == 3 and decision["percent_agreement"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    pairs = {tuple(p["annotators"]): p for p in decision["cohen_kappa"]}
    assert pairs[("a", "b")]["records"] == 3 and pairs[("a", "c")]["records"] == 1
    assert result["annotators"]["a"] == {"submitted": 4, "keep": 3, "discard": 1, "corrected": 1}
    assert result["annotators"]["b"]["draft"] == 1
    quality = next(q for q in result["questions"] if q["question"] == "quality")
    assert quality["records"] == 1 and quality["percent_agreement"] == 0.0


def test_the_discard_button_is_a_discard_decision():
    rows = [row("r1", a={"decision": "discard"}, b=("discarded", {"decision": "keep"})),
            row("r2", a={"decision": "keep"}, b=("discarded", {}))]
    decision = to_dict(agreement(rows))["questions"][0]
    assert decision["records"] == 2 and decision["percent_agreement"] == pytest.approx(0.5)
    assert to_dict(agreement(rows))["annotators"]["b"] == {"discarded": 2, "discard": 2}


def test_krippendorff_alpha_is_one_for_perfect_agreement_and_none_without_variation():
    perfect = agreement([row("r1", a={"decision": "keep"}, b={"decision": "keep"}),
                         row("r2", a={"decision": "discard"}, b={"decision": "discard"})])
    assert perfect.questions[0].alpha == pytest.approx(1.0)
    constant = agreement([row("r1", a={"decision": "keep"}, b={"decision": "keep"})])
    assert constant.questions[0].alpha is None


def test_an_export_file_is_read_and_lines_that_are_not_rows_are_problems(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + json.dumps({"instruction": "x"}) + "\n{bad\n")
    rows, problems = read_export(path)
    assert [r["id"] for r in rows] == ["r1", "r2", "r3", "r4"]
    assert [(p.line, p.field) for p in problems] == [(5, "id"), (6, "-")]

"""`eval judge-agreement`: the judge against the people's majority, on a case worked out by hand, from both kinds of
file (pairs of `data export --format dpo`, rows of `annotate export`)."""

import json

import pytest

from annotation.mapping import compare_item, export_rows
from eval_suites.judge import judge_cache, judge_prompt
from eval_suites.judge_agreement import human_pairs
from workbench.core.backends import BackendConfig
from workbench.core.fingerprint import fingerprint
from workbench.core.records import Record

Q = "Which course teaches statistics?"


def pair(n: int, chosen_id: str, rejected_id: str, prefer: tuple[int, int], source: str = "ranking") -> dict:
    return {"prompt": f"### Instruction:\n{Q} ({n})", "instruction": f"{Q} ({n})", "context": "",
            "chosen": f"good answer {n}", "rejected": f"poor answer {n}", "chosen_id": chosen_id,
            "rejected_id": rejected_id, "source": source,
            "detail": {"prefer_chosen": prefer[0], "prefer_rejected": prefer[1]} if source == "ranking" else {}}


# x is the side with the smaller id: a* < b*. Who won, by hand:
PAIRS = [
    pair(1, "a1", "b1", (2, 0)),  # people x
    pair(2, "b2", "a2", (2, 1)),  # people y (the chosen one is b2, ordered second)
    pair(3, "a3", "b3", (1, 0), source="correction"),  # people x (one reviewer's correction)
    pair(4, "b4", "a4", (2, 0)),  # people y
    pair(5, "a5", "b5", (3, 0)),  # people x
    pair(6, "a6", "b6", (1, 1)),  # split evenly: left out
    pair(7, "a7", "b7", (0, 0), source="judge"),  # no person chose it: left out
]
# The judge's verdicts, (x shown as A, then y shown as A):
VERDICTS = {1: ("A", "B"),  # prefers x in both: agrees
            2: ("B", "A"),  # prefers y in both: agrees
            3: ("A", "A"),  # always the first slot: a tie, a miss
            4: ("A", "B"),  # prefers x: disagrees
            5: ("A", "B")}  # agrees


def seed_verdicts(config: BackendConfig) -> None:
    """The judge's answers, put in its cache as it would have written them."""
    cache = judge_cache(config)
    for n, (forward, backward) in VERDICTS.items():
        p = PAIRS[n - 1]
        x, y = (p["chosen"], p["rejected"]) if p["chosen_id"] < p["rejected_id"] else (p["rejected"], p["chosen"])
        cache.add([{"id": fingerprint(prompt=judge_prompt(p["instruction"], "", x, y)), "prediction": forward},
                   {"id": fingerprint(prompt=judge_prompt(p["instruction"], "", y, x)), "prediction": backward}])


def test_agreement_kappa_and_position_bias_by_hand(tiny_falcon, tmp_path, invoke):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    seed_verdicts(BackendConfig(model=str(tiny_falcon)))
    report = tmp_path / "agreement.json"
    result = invoke("eval", "judge-agreement", "--judge", tiny_falcon, "--from", source, "-o", report)
    assert result.exit_code == 0, result.output
    got = json.loads(report.read_text())
    # judge x, y, tie, x, x against people x, y, x, y, x: 3 of 5 agree.
    assert got["pairs"] == 5 and got["no_majority"] == 1 and got["not_human"] == 1
    assert got["accuracy"]["mean"] == pytest.approx(0.6)
    # p_o = 3/5; judge labels x 3, y 1, tie 1; people x 3, y 2: p_e = (3*3 + 1*2) / 25 = 0.44.
    assert got["kappa"]["mean"] == pytest.approx((0.6 - 0.44) / (1 - 0.44))
    assert got["accuracy"]["ci_low"] <= 0.6 <= got["accuracy"]["ci_high"]
    assert got["position_bias"] == pytest.approx(6 / 10) and got["decided"] == pytest.approx(0.8)
    disagreements = [(r["instruction"], r["people"], r["judge"]) for r in got["rows"] if not r["agree"]]
    assert disagreements == [(f"{Q} (3)", "x", "tie"), (f"{Q} (4)", "y", "x")]
    assert "agreement with their majority 0.60" in result.output and "Where the judge disagrees (2 pairs" in \
        result.output and "60% of its verdicts" in result.output
    as_json = invoke("eval", "judge-agreement", "--judge", tiny_falcon, "--from", source, "--json")
    assert json.loads(as_json.output)["accuracy"] == got["accuracy"]


def test_pairs_of_an_export_count_each_annotators_ranking():
    group = [Record(Q, response=text, meta={"compare_group": "g", "candidate": k})
             for k, text in enumerate(["STAT 101.", "No idea.", "STAT 101 or 102."])]
    pushed = compare_item(group, 4)  # a fourth, empty slot: never a pair

    def answer(user, order, decision="keep"):
        return {"user_id": user, "status": "submitted", "values": {
            "decision": {"value": decision},
            "ranking": {"value": [{"value": s, "rank": r} for r, s in enumerate(order, start=1)]}}}

    item = {"id": "srv", "external_id": "g", "fields": pushed["fields"], "metadata": pushed["metadata"],
            "responses": [answer("u1", ["response_1", "response_3", "response_2", "response_4"]),
                          answer("u2", ["response_3", "response_4", "response_1", "response_2"]),
                          answer("u3", ["response_2", "response_1", "response_3", "response_4"], "discard")]}
    (row,) = export_rows([item], {})
    assert row["record"]["candidates"][1]["id"] == group[1].id and row["fields"]["response_1"] == "STAT 101."
    pairs, not_human = human_pairs_of(row)
    by_texts = {frozenset((p.x, p.y)): p for p in pairs}
    assert len(pairs) == 3 and not_human == 0  # only the two keepers' rankings count
    one_three = by_texts[frozenset(("STAT 101.", "STAT 101 or 102."))]
    assert sorted([one_three.prefer_x, one_three.prefer_y]) == [1, 1] and one_three.majority is None
    one_two = by_texts[frozenset(("STAT 101.", "No idea."))]
    assert one_two.majority == ("x" if one_two.x == "STAT 101." else "y")
    assert {one_two.ids[0], one_two.ids[1]} == {group[0].id, group[1].id}


def human_pairs_of(row, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.jsonl"
        path.write_text(json.dumps(row) + "\n")
        problems = []
        out = human_pairs(path, problems)
        assert not problems
        return out


def test_a_file_without_human_pairs_is_one_line(tiny_falcon, tmp_path, invoke):
    source = tmp_path / "judged.jsonl"
    source.write_text(json.dumps(PAIRS[-1]) + "\n" + "not json\n")
    result = invoke("eval", "judge-agreement", "--judge", tiny_falcon, "--from", source)
    assert result.exit_code == 1 and "no pair that people ranked or chose (1 pairs from a judge" in result.output
    missing = invoke("eval", "judge-agreement", "--judge", tiny_falcon, "--from", tmp_path / "missing.jsonl")
    assert missing.exit_code == 1 and "missing.jsonl" in missing.output and "Traceback" not in missing.output


def test_an_uncached_judge_runs_the_model(tiny_falcon, tmp_path, invoke, monkeypatch):
    from eval_suites import judge

    monkeypatch.setattr(judge, "JUDGE_PARAMS", judge.JUDGE_PARAMS.model_copy(update={"max_new_tokens": 2}))
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAIRS[:2]))
    result = invoke("eval", "judge-agreement", "--judge", tiny_falcon, "--from", source, "--json")
    if result.exit_code == 1:  # a random tiny model rarely writes a verdict: all unparsed is an error, not kappa 0
        assert "gave no verdict that could be read (A, B or tie) in 4 answers" in result.output
        return
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)  # the model's loading bar goes to stderr
    # A random tiny model: whatever it says, every verdict is counted as parsed or not, and nothing more.
    assert got["pairs"] == 2 and 0 <= got["unparsed"] < 4 and got["accuracy"]["mean"] is not None


def test_a_bootstrap_count_that_means_nothing_is_refused_before_any_judging(tmp_path, invoke):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAIRS[:2]))
    for count in ("-5", "0", "9"):
        result = invoke("eval", "judge-agreement", "--judge", tmp_path / "no-model", "--from", source,
                        "--bootstrap", count)
        assert result.exit_code == 2 and "greater than or equal to 10" in result.output
        assert "no-model" not in result.output  # refused before the judge was looked for

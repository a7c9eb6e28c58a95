"""Preference pairs (`data export --format dpo`) from the three sources: rankings, corrections, judge verdicts."""

import json

import pytest

from eval_suites.judge import judge_cache, judge_prompt
from workbench.core.backends import BackendConfig
from workbench.core.fingerprint import fingerprint
from workbench.core.io import write_records
from workbench.core.prompts import format_prompt
from workbench.core.records import Record

QUESTION = "Which course teaches statistics?"


def ranked(key: str, answers: list[tuple[str, int, dict]]) -> list[Record]:
    """Candidates as `annotate pull` returns them from a comparison: (response, position, annotator ranks)."""
    return [Record(QUESTION, response=text, source="generated",
                   lineage=[{"stage": "review", "action": "rank", "reason": "ranked by review", "detail": {}}],
                   meta={"compare_group": key, "candidate": k,
                         "ranking": {"slot": f"response_{k + 1}", "position": position, "of": len(answers),
                                     "ranks": ranks}})
            for k, (text, position, ranks) in enumerate(answers)]


GROUP = ranked("g1", [("STAT 101 teaches it.", 1, {"ann": 1, "bob": 1}),
                      ("Maybe STAT 200.", 2, {"ann": 2, "bob": 3}),
                      ("Ask the library.", 3, {"ann": 3, "bob": 2})])
TIED = ranked("g2", [("Yes.", 1, {"ann": 1}), ("No.", 1, {"ann": 1})])
CORRECTED = Record("what does MATH 2 cover?", response="MATH 2 covers linear algebra.", source="generated",
                   lineage=[{"stage": "review", "action": "edit", "reason": "corrected by review",
                             "detail": {"original": {"response": "MATH 2 covers algebra and"}}}])
SAME = Record("Name a course.", response="STAT 101", lineage=[{"stage": "review", "action": "edit",
                                                                  "detail": {"original": {"response": " stat 101 "}}}])


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_source_gives_trl_columns_with_the_finetuning_prompt(tmp_path, invoke):
    source = tmp_path / "ranked.jsonl"
    write_records(source, [*GROUP, *TIED, CORRECTED, SAME, Record("Unranked?", response="Plain.")])
    out = tmp_path / "pairs.jsonl"
    result = invoke("data", "export", source, "--format", "dpo", "-o", out)
    assert result.exit_code == 0, result.output
    pairs = rows(out)
    ranking = [p for p in pairs if p["source"] == "ranking"]
    # Every ordered pair of the three: 1>2, 1>3, 2>3.
    assert [(p["chosen"], p["rejected"]) for p in ranking] == [
        ("STAT 101 teaches it.", "Maybe STAT 200."), ("STAT 101 teaches it.", "Ask the library."),
        ("Maybe STAT 200.", "Ask the library.")]
    assert ranking[0]["prompt"] == format_prompt(QUESTION) and ranking[0]["chosen_id"] == GROUP[0].id
    # 2 over 3: ann agrees, bob does not; kept in the pair for whoever checks a judge against the people.
    assert (ranking[2]["detail"]["prefer_chosen"], ranking[2]["detail"]["prefer_rejected"]) == (1, 1)
    assert ranking[0]["lineage"]["chosen"] == GROUP[0].lineage
    (correction,) = [p for p in pairs if p["source"] == "correction"]
    assert (correction["chosen"], correction["rejected"]) == ("MATH 2 covers linear algebra.",
                                                              "MATH 2 covers algebra and")
    dropped = rows(tmp_path / "pairs.dropped.jsonl")  # through the ledger: each pair as a record, with why
    assert sorted(d["lineage"][-1]["reason"] for d in dropped) == [
        "chosen and rejected are equal after normalisation", "tied in the resolved ranking"]
    tie = next(d for d in dropped if d["lineage"][-1]["reason"].startswith("tied"))
    assert {tie["meta"]["pair"]["chosen"], tie["meta"]["pair"]["rejected"]} == {"Yes.", "No."}
    assert "3 from ranking, 1 from correction" in result.output
    assert "1  unpaired: no ranking, correction or judge verdict" in result.output
    manifest = json.loads((tmp_path / "pairs.manifest.json").read_text())
    assert manifest["counts"]["out"] == 4 and manifest["counts"]["unpaired"] == 1


def test_best_worst_and_the_system_prompt_and_parquet(tmp_path, invoke):
    import datasets

    source = tmp_path / "ranked.jsonl"
    write_records(source, GROUP)
    out = tmp_path / "pairs.parquet"
    result = invoke("data", "export", source, "--format", "dpo", "--pairs", "best-worst", "--system-prompt", "-o", out)
    assert result.exit_code == 0, result.output
    table = datasets.Dataset.from_parquet(str(out))
    assert table.num_rows == 1 and table[0]["chosen"] == "STAT 101 teaches it." and \
        table[0]["rejected"] == "Ask the library."
    assert table[0]["prompt"].startswith("You are an intelligent assistant") and \
        json.loads(table[0]["lineage"])["chosen"] == GROUP[0].lineage


def test_nothing_to_pair_is_refused_in_one_line_and_wrong_options_too(tmp_path, invoke):
    source = tmp_path / "plain.jsonl"
    write_records(source, [Record("Unranked?", response="Plain.")])
    result = invoke("data", "export", source, "--format", "dpo", "-o", tmp_path / "pairs.jsonl")
    assert result.exit_code == 1 and "none kept" in result.output and "no ranking, correction" in result.output
    assert invoke("data", "export", source, "--format", "dpo", "-o", tmp_path / "empty.jsonl",
                  "--allow-empty").exit_code == 0
    bad = invoke("data", "export", source, "--format", "dpo", "--pairs", "some", "-o", tmp_path / "p.jsonl")
    assert bad.exit_code == 1 and "pairs" in bad.output and "Traceback" not in bad.output
    same = invoke("data", "export", source, "--format", "dpo", "-o", source)
    assert same.exit_code == 1 and source.read_text().count("\n") == 1


def test_judge_verdicts_make_pairs_only_when_both_orders_agree(tmp_path, tiny_falcon, invoke):
    candidates = [Record(QUESTION, response=text, meta={"compare_group": "g9", "candidate": k})
                  for k, text in enumerate(["STAT 101.", "No idea.", "Perhaps STAT 101 or 102."])]
    config = BackendConfig(model=str(tiny_falcon))
    # The judge's answers, set in its cache by hand: 0 beats 1 in both orders; 0 vs 2 flips with the order
    # (position bias); 2 beats 1 in both.
    said = {(0, 1): ("A", "B"), (0, 2): ("A", "A"), (1, 2): ("B", "A")}
    cache = judge_cache(config)
    for (i, j), (forward, backward) in said.items():
        x, y = candidates[i].response, candidates[j].response
        cache.add([{"id": fingerprint(prompt=judge_prompt(QUESTION, "", x, y)), "prediction": forward},
                   {"id": fingerprint(prompt=judge_prompt(QUESTION, "", y, x)), "prediction": backward}])
    source = tmp_path / "candidates.jsonl"
    write_records(source, candidates)
    out = tmp_path / "pairs.jsonl"
    result = invoke("data", "export", source, "--format", "dpo", "--judge", tiny_falcon, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted((p["chosen"], p["rejected"]) for p in rows(out)) == [("Perhaps STAT 101 or 102.", "No idea."),
                                                                       ("STAT 101.", "No idea.")]
    assert {p["source"] for p in rows(out)} == {"judge"} and rows(out)[0]["detail"]["judge"] == str(tiny_falcon)
    (dropped,) = rows(tmp_path / "pairs.dropped.jsonl")
    assert dropped["lineage"][-1]["reason"] == "the judge did not prefer the same answer in both orders"
    best_worst = tmp_path / "best.jsonl"
    invoke("data", "export", source, "--format", "dpo", "--judge", tiny_falcon, "--pairs", "best-worst",
           "-o", best_worst)
    assert [(p["chosen"], p["rejected"]) for p in rows(best_worst)] == [("STAT 101.", "No idea.")]


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.json"])
def test_pairs_are_jsonl_or_parquet(tmp_path, invoke, name):
    source = tmp_path / "ranked.jsonl"
    write_records(source, GROUP)
    result = invoke("data", "export", source, "--format", "dpo", "-o", tmp_path / name)
    assert result.exit_code == 1 and ".jsonl or .parquet" in result.output

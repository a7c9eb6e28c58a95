import sys
from pathlib import Path

import pytest

from pipelines.instruction_filter import (
    InstructionFilter,
    RougeIndex,
    decision_text,
    filter_config,
    filter_records,
    lcs_length,
)
from workbench.core.errors import ConfigError
from workbench.core.ledger import Ledger
from workbench.core.records import Record

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from rouge_filter import exhaustive, synthetic_instructions  # noqa: E402


def judge(text, preset="self-instruct", pool=(), **overrides):
    return InstructionFilter.create(filter_config(preset, **overrides), pool).judge(text)


@pytest.mark.parametrize("text, rule, reason", [
    ("Too short here", "words", "too short (<= 3 words)"),
    ("word " * 151, "words", "too long (> 150 words)"),
    ("Describe the image below in detail", "keyword", "keyword: image"),
    ("Please GO TO the admissions office page", "keyword", "keyword: go to"),
    ("Plot the fees of every programme over time", "keyword", "keyword: plot"),
    ("write a PROGRAM that lists every module", "prefix", "starts with 'Write a program'"),
    ("- List four modules of the course", "punctuation", "starts with punctuation"),
    ("¿Qué módulos tiene el curso de economía?", "non-ascii", "starts with a non-ASCII character"),
])
def test_each_rule_drops_with_its_reason(text, rule, reason):
    verdict = judge(text)
    assert (verdict.kept, verdict.rule, verdict.reason) == (False, rule, reason)


def test_whole_words_only_and_the_boundaries_of_the_word_count():
    assert judge("Describe the imagery of this short poem").kept  # "imagery" is not "image"
    assert not judge("one two three").kept and judge("one two three four").kept


def test_alpaca_preset_adds_its_keywords_and_custom_rules_can_allow_some():
    text = "Describe the music played at the welcome party"
    assert judge(text).kept
    assert judge(text, "alpaca").reason == "keyword: music"
    domain = "How do I file an application for the Data Science MSc?"
    assert judge(domain).reason == "keyword: file"
    assert judge(domain, allow_keywords=("file", "files")).kept


def test_rouge_drop_names_the_most_similar_pool_instruction():
    pool = ["List five ways to save money as a student.", "Describe the campus library opening hours."]
    verdict = judge("List five good ways to save money as a student.", pool=pool)
    assert verdict.rule == "rouge" and verdict.similar_to == pool[0] and verdict.score > 0.7
    assert judge("Explain what an ECTS credit measures in hours.", pool=pool).kept


def test_accepted_candidates_join_the_pool_in_order():
    f = InstructionFilter.create(filter_config())
    assert f.judge("Suggest four ideas for a student society event").kept
    second = f.judge("Suggest four ideas for a student society party")
    assert second.rule == "rouge" and second.similar_to == "Suggest four ideas for a student society event"


def test_decisions_use_the_capitalised_form_but_never_change_the_text():
    assert decision_text("  write   A program\tthat") == "Write a program that"
    ledger = Ledger("filter")
    kept = filter_records([Record("explain   the ECTS system to a new student")], filter_config(), ledger)
    assert kept[0].instruction == "explain   the ECTS system to a new student"


def test_identical_decisions_to_the_exhaustive_self_instruct_loop():
    texts = synthetic_instructions(700, seed=5)
    # Mix in rule-breakers and exact repeats so every branch of the reference is taken.
    extra = ["Draw a map of the campus", "Write a program to sort marks", "!! odd start here now",
             "Éducation: list three facts now", "short one", texts[250], texts[300].upper()]
    candidates = texts[100:] + extra
    reference = exhaustive(candidates, texts[:100])
    f = InstructionFilter.create(filter_config(), texts[:100], candidates)
    mine = []
    for text in candidates:
        v = f.judge(text)
        mine.append(("keep",) if v.kept else (("rouge", v.similar_to, v.score) if v.rule == "rouge" else (v.rule,)))
    assert mine == reference
    assert {d[0] for d in reference} >= {"keep", "rouge", "keyword", "prefix", "punctuation", "non-ascii", "words"}


def test_index_skips_most_pairs():
    texts = synthetic_instructions(1500, seed=1)
    index = RougeIndex(0.7, texts)
    for text in texts:
        if index.most_similar_above(text) is None:
            index.add(text)
    assert index.pairs_scored < len(index) ** 2 / 20


def test_bit_parallel_lcs_matches_rouge_score_table():
    import random

    from rouge_score.rouge_scorer import _lcs_table

    rng = random.Random(0)
    for _ in range(500):
        a = [rng.randrange(5) for _ in range(rng.randint(1, 25))]
        b = [rng.randrange(5) for _ in range(rng.randint(1, 25))]
        masks: dict[int, int] = {}
        for i, t in enumerate(a):
            masks[t] = masks.get(t, 0) | 1 << i
        assert lcs_length(masks, len(a), b) == _lcs_table(a, b)[-1][-1]


def test_filter_keeps_in_order_and_drops_through_the_ledger():
    ledger = Ledger("filter", "r1")
    records = [Record("Describe the campus in winter for a brochure"), Record("Draw a picture of it"),
               Record("Describe the campus in winter for a leaflet")]
    kept = filter_records(records, filter_config(), ledger, pool=[])
    rejected = ledger.dropped
    assert [r.id for r in kept] == [records[0].id]
    assert [r.lineage[-1]["reason"] for r in rejected] == ["keyword: draw", "ROUGE-L > 0.7 against the pool"]
    assert rejected[1].lineage[-1]["detail"]["similar_to"] == "Describe the campus in winter for a brochure"
    assert dict(ledger.counts) == {"drop: keyword: draw": 1, "drop: ROUGE-L > 0.7 against the pool": 1}


def test_unknown_rule_key_is_a_config_error():
    with pytest.raises(ConfigError, match="kewords: unknown key"):
        filter_config("self-instruct", kewords=("x",))

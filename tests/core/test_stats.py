import pytest

from workbench.core.records import Record
from workbench.core.stats import compute_stats, percentile


def test_a_set_shaped_like_dolly_sits_on_dollys_shares():
    """The "vs Dolly-15k" column: a set with Dolly's published count in every category has Dolly's share in every
    row, and a set of one category has 100% where Dolly has less."""
    from workbench.core.records import DOLLY_CATEGORY_COUNTS

    shaped = [Record(f"task {name} {i}", category=name) for name, n in DOLLY_CATEGORY_COUNTS.items() for i in range(n)]
    rows = compute_stats(shaped).category_rows()
    assert [name for name, *_ in rows] == list(DOLLY_CATEGORY_COUNTS)
    for name, n, share, dolly in rows:
        assert n == DOLLY_CATEGORY_COUNTS[name] and share == pytest.approx(dolly)
    assert sum(dolly for *_, dolly in rows) == pytest.approx(100.0)
    one = {name: (share, dolly) for name, _, share, dolly in
           compute_stats([Record("a", category="closed_qa")]).category_rows()}
    assert one["closed_qa"][0] == 100.0 and 0 < one["closed_qa"][1] < 100
    assert compute_stats(shaped).to_dict()["dolly_shares"]["closed_qa"] == pytest.approx(one["closed_qa"][1] / 100)


def test_category_counts_in_dolly_order_with_uncategorised_last():
    records = [Record("a b", category="brainstorming"), Record("c", category="open_qa"),
               Record("d", category="open_qa"), Record("e")]
    stats = compute_stats(records)
    assert list(stats.categories)[:8][0] == "open_qa"
    assert stats.categories["open_qa"] == 2 and stats.categories["brainstorming"] == 1
    assert stats.categories["(none)"] == 1
    rows = {name: (n, share, dolly) for name, n, share, dolly in stats.category_rows()}
    assert rows["open_qa"][1] == 50.0
    assert rows["open_qa"][2] == pytest.approx(100 * 3742 / 15011)
    assert rows["(none)"][2] == 0


def test_percentiles_match_numpy():
    import numpy as np

    values = [1, 5, 2, 9, 14, 3, 3, 8]
    for p in (50, 90, 99):
        assert percentile(sorted(values), p) == pytest.approx(np.percentile(values, p))


def test_word_lengths():
    stats = compute_stats([Record("one two three", response="a b"), Record("one", response="")])
    assert stats.words["instruction"]["max"] == 3
    assert stats.words["response"]["p50"] == 1.0
    assert stats.tokens == {}


def test_token_lengths_with_a_tokenizer(tiny_falcon):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_falcon)
    stats = compute_stats([Record("Do I have to know programming?")], tokenizer)
    expected = len(tokenizer("Do I have to know programming?", add_special_tokens=False)["input_ids"])
    assert stats.tokens["instruction"]["max"] == expected > 0

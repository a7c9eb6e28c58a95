"""Models' results on the same suites compared: percentile-bootstrap CIs of every metric and paired differences
against the first model, gathered into one summary (`compare`). `eval_suites.report` renders it.

Every metric is a ratio of sums over items (see `eval_suites.metrics`), so one percentile bootstrap serves all of
them: resample the items with replacement, recompute the ratio, take the 2.5th and 97.5th percentiles. Differences
against the first model are paired: both models' items are resampled with the same indices (items they share).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from eval_suites.metrics import METRICS, summary_metrics
from workbench.core.errors import InputError
from workbench.core.io import Problem, read_json_lines


@dataclass
class SuiteResult:
    manifest: dict[str, Any]
    rows: dict[str, dict[str, Any]]  # item id -> scores
    answers: dict[str, str]  # item id -> prediction
    metrics: list[str]
    questions: dict[str, str] = field(default_factory=dict)  # item id -> question or prompt, as asked


@dataclass
class ModelResults:
    label: str
    path: Path
    suites: dict[str, SuiteResult] = field(default_factory=dict)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    problems: list[Problem] = []
    rows = [obj for _, obj, _ in read_json_lines(path, problems)]
    if problems:
        raise InputError(str(problems[0]), hint="results files are written by `workbench eval run`")
    return rows


def load_results(path: str | Path) -> ModelResults:
    """A results folder of `workbench eval run`: one subfolder per suite."""
    path = Path(path)
    folders = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file()) if path.is_dir() else []
    if not folders:
        raise InputError(f"{path}: no suite results here (expected SUITE/manifest.json from `workbench eval run`)")
    results = None
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        results = results or ModelResults(manifest["name"], path)
        metrics = list(json.loads((folder / "metrics.json").read_text()))
        rows = {r["id"]: r for r in _jsonl(folder / "scores.jsonl")}
        predictions = _jsonl(folder / "predictions.jsonl")
        answers = {r["id"]: r["prediction"] for r in predictions}
        questions = {r["id"]: r.get("question", "") for r in predictions}
        results.suites[manifest["suite"]] = SuiteResult(manifest, rows, answers, metrics, questions)
    return results


# --- Bootstrap ------------------------------------------------------------------------------------------------------

def pairs(metric: str, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Numerators and denominators per item (0, 0 where the metric does not apply)."""
    got = [METRICS[metric].pair(r) for r in rows]
    return (np.array([p[0] if p else 0.0 for p in got], dtype=float),
            np.array([p[1] if p else 0.0 for p in got], dtype=float))


def _ratios(num: np.ndarray, den: np.ndarray, index: np.ndarray) -> np.ndarray:
    n, d = num[index].sum(axis=1), den[index].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)


def bootstrap(metric: str, rows: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    """Mean and 95% percentile-bootstrap CI of one metric over items."""
    num, den = pairs(metric, rows)
    applied = int((den > 0).sum())
    if not applied:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    index = np.random.default_rng(seed).integers(0, len(rows), size=(resamples, len(rows)))
    stats = _ratios(num, den, index)
    stats = stats[~np.isnan(stats)]
    low, high = np.percentile(stats, [2.5, 97.5])
    return {"mean": float(num.sum() / den.sum()), "ci_low": float(low), "ci_high": float(high), "n": applied}


def paired_difference(metric: str, rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], resamples: int,
                      seed: int) -> dict[str, Any] | None:
    """B minus A with a paired 95% bootstrap CI; rows are the same items in the same order."""
    num_a, den_a = pairs(metric, rows_a)
    num_b, den_b = pairs(metric, rows_b)
    if not den_a.sum() or not den_b.sum():
        return None
    index = np.random.default_rng(seed).integers(0, len(rows_a), size=(resamples, len(rows_a)))
    diffs = _ratios(num_b, den_b, index) - _ratios(num_a, den_a, index)
    diffs = diffs[~np.isnan(diffs)]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"diff": float(num_b.sum() / den_b.sum() - num_a.sum() / den_a.sum()), "ci_low": float(low),
            "ci_high": float(high)}


# --- Comparison ------------------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    models: list[ModelResults]
    summary: dict[str, Any]
    suites: list[str]
    toxicity_violations: list[str] = field(default_factory=list)


def compare(paths: list[str | Path], *, resamples: int = 1000, seed: int = 0,
            max_toxicity_rate: float | None = None, judge: dict[str, Any] | None = None,
            lead: tuple[str, ...] = ()) -> Comparison:
    """Every model's metrics with CIs, and each later model's paired differences against the first. The suites in
    `lead` come first, in that order (a recipe's own suite before the general ones); the others by name."""
    models = [load_results(p) for p in paths]
    seen: dict[str, int] = {}
    for m in models:  # two folders with the same label stay apart
        seen[m.label] = seen.get(m.label, 0) + 1
        if seen[m.label] > 1:
            m.label = f"{m.label} ({m.path.name})"
    suites = sorted({s for m in models for s in m.suites},
                    key=lambda s: (lead.index(s) if s in lead else len(lead), s))
    summary: dict[str, Any] = {"models": {}, "differences": {}, "bootstrap": {"resamples": resamples, "seed": seed},
                               "created": datetime.now(UTC).isoformat(timespec="seconds"), "contamination": {},
                               "runs": {}}
    for m in models:
        summary["runs"][m.label] = {"path": str(m.path), **{
            k: next(iter(m.suites.values())).manifest.get(k) for k in ("model", "adapter", "quant", "backend")}}
        summary["models"][m.label] = {}
        summary["contamination"][m.label] = {}
        for suite, result in m.suites.items():
            rows = list(result.rows.values())
            summary["models"][m.label][suite] = {metric: bootstrap(metric, rows, resamples, seed)
                                                 for metric in summary_metrics() if metric in result.metrics}
            summary["contamination"][m.label][suite] = result.manifest.get("contamination")
    first = models[0]
    for m in models[1:]:
        key = f"{m.label}_vs_{first.label}"
        summary["differences"][key] = {}
        for suite in suites:
            if suite not in m.suites or suite not in first.suites:
                continue
            common = [i for i in first.suites[suite].rows if i in m.suites[suite].rows]
            rows_a = [first.suites[suite].rows[i] for i in common]
            rows_b = [m.suites[suite].rows[i] for i in common]
            metrics = [x for x in summary_metrics()
                       if x in m.suites[suite].metrics and x in first.suites[suite].metrics]
            summary["differences"][key][suite] = {
                metric: d for metric in metrics if (d := paired_difference(metric, rows_a, rows_b, resamples, seed))}
    violations = []
    if max_toxicity_rate is not None:
        for label, per_suite in summary["models"].items():
            for suite, metrics in per_suite.items():
                rate = metrics.get("toxicity_rate", {}).get("mean")
                if rate is not None and rate > max_toxicity_rate:
                    violations.append(f"{label} on {suite}: toxicity rate {rate:.3f} > {max_toxicity_rate}")
        summary["max_toxicity_rate"] = max_toxicity_rate
    if judge:
        summary["judge"] = judge
    return Comparison(models, summary, suites, violations)

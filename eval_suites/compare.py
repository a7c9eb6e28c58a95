"""Compare models' results on the same suites: bootstrap CIs, paired differences, summary.json and an HTML report.

Every metric is a ratio of sums over items (see `eval_suites.metrics`), so one percentile bootstrap serves all of
them: resample the items with replacement, recompute the ratio, take the 2.5th and 97.5th percentiles. Differences
against the first model are paired: both models' items are resampled with the same indices (items they share).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from eval_suites.metrics import METRICS
from workbench.core.errors import InputError
from workbench.core.io import Problem, atomic_write_text, read_json_lines

SUMMARY_METRICS = ("em", "f1", "rougeL", "grounded", "abstain_precision", "abstain_recall", "count_compliance",
                   "unique_items", "distinct_1", "distinct_2", "relevance", "off_topic", "toxicity_rate")


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
            max_toxicity_rate: float | None = None, judge: dict[str, Any] | None = None) -> Comparison:
    """Every model's metrics with CIs, and each later model's paired differences against the first."""
    models = [load_results(p) for p in paths]
    seen: dict[str, int] = {}
    for m in models:  # two folders with the same label stay apart
        seen[m.label] = seen.get(m.label, 0) + 1
        if seen[m.label] > 1:
            m.label = f"{m.label} ({m.path.name})"
    suites = sorted({s for m in models for s in m.suites})
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
                                                 for metric in SUMMARY_METRICS if metric in result.metrics}
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
            metrics = [x for x in SUMMARY_METRICS if x in m.suites[suite].metrics and x in first.suites[suite].metrics]
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


# --- Output -------------------------------------------------------------------------------------------------------

def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(comparison: Comparison) -> str:
    """One Markdown table per suite: each model's mean [95% CI], and differences against the first model."""
    out = []
    labels = [m.label for m in comparison.models]
    for suite in comparison.suites:
        metrics = [x for x in SUMMARY_METRICS
                   if any(x in comparison.summary["models"][lb].get(suite, {}) for lb in labels)]
        out.append(f"### {suite}\n")
        header = ["metric", *labels, *(f"{lb} − {labels[0]}" for lb in labels[1:])]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for metric in metrics:
            cells = [metric]
            for lb in labels:
                s = comparison.summary["models"][lb].get(suite, {}).get(metric)
                cells.append(f"{_fmt(s['mean'])} [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]" if s else "")
            for lb in labels[1:]:
                d = comparison.summary["differences"][f"{lb}_vs_{labels[0]}"].get(suite, {}).get(metric)
                cells.append(f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]{_star(d)}" if d else "")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out.append("95% percentile bootstrap CIs over items; * marks a difference whose CI excludes 0.")
    return "\n".join(out) + "\n"


def _star(d: dict[str, float]) -> str:
    return " *" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""


def plot_suite(comparison: Comparison, suite: str) -> str:
    """Bars with 95% CIs per metric and model, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m.label for m in comparison.models if suite in m.suites]
    metrics = [x for x in SUMMARY_METRICS
               if any((comparison.summary["models"][lb][suite].get(x) or {}).get("mean") is not None for lb in labels)]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(metrics) + 2), 3.6), dpi=100)
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        stats = [comparison.summary["models"][label][suite].get(x) or {} for x in metrics]
        means = [s.get("mean") if s.get("mean") is not None else np.nan for s in stats]
        low = [m - s["ci_low"] if s.get("mean") is not None else 0 for m, s in zip(means, stats)]
        high = [s["ci_high"] - m if s.get("mean") is not None else 0 for m, s in zip(means, stats)]
        axes.bar(np.arange(len(metrics)) + k * width - 0.4 + width / 2, means, width, yerr=[low, high], capsize=3,
                 label=label)
    axes.set_xticks(np.arange(len(metrics)), metrics, rotation=30, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_title(f"{suite}: mean and 95% bootstrap CI")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.better{background:#dff5df}.worse{background:#f9dede}
.answer{white-space:pre-wrap;background:#f6f6f6;padding:6px;margin:4px 0;border-radius:4px}
details{margin:4px 0}.context{white-space:pre-wrap;font-size:90%;color:#555}.bad{color:#b00}.ok{color:#070}"""


def report_html(comparison: Comparison, suites_items: dict[str, list[dict[str, Any]]]) -> str:
    """The whole report as one self-contained HTML page (plots embedded)."""
    s, e = comparison.summary, html.escape
    labels = [m.label for m in comparison.models]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Eval report</title><style>{CSS}</style>"
             f"</head><body><h1>Evaluation report</h1><p>{e(s['created'])} · {len(labels)} model(s) · "
             f"95% percentile bootstrap, {s['bootstrap']['resamples']} resamples, seed {s['bootstrap']['seed']}</p>",
             "<h2>Models</h2><table><tr><th>label</th><th>model</th><th>adapter</th><th>quant</th><th>backend</th>"
             "<th>results</th></tr>"]
    for label in labels:
        r = s["runs"][label]
        cells = "".join(f"<td>{e(str(r.get(k) or '–'))}</td>" for k in ("model", "adapter", "quant", "backend", "path"))
        parts.append(f"<tr><td>{e(label)}</td>{cells}</tr>")
    parts.append("</table>")
    parts += _safety_html(comparison), _contamination_html(comparison)
    for suite in comparison.suites:
        parts.append(f"<h2 id='{e(suite)}'>{e(suite)}</h2>")
        parts.append(_metrics_html(comparison, suite))
        parts.append(f"<img alt='{e(suite)} metrics' src='data:image/png;base64,{plot_suite(comparison, suite)}'>")
        if "judge" in s:
            parts.append(_judge_html(s["judge"], suite))
        parts.append(_items_html(comparison, suite, suites_items.get(suite, [])))
    parts.append("</body></html>")
    return "\n".join(parts)


def _metrics_html(comparison: Comparison, suite: str) -> str:
    s, e = comparison.summary, html.escape
    labels = [m.label for m in comparison.models]
    rows = ["<table><tr><th>metric</th>" + "".join(f"<th>{e(lb)}</th>" for lb in labels)
            + "".join(f"<th>{e(lb)} − {e(labels[0])}</th>" for lb in labels[1:]) + "</tr>"]
    for metric in SUMMARY_METRICS:
        stats = [s["models"][lb].get(suite, {}).get(metric) for lb in labels]
        if not any(stats):
            continue
        cells = [f"<td title='{e(METRICS[metric].description)}'>{metric}</td>"]
        for st in stats:
            cells.append(f"<td>{_fmt(st['mean'])} [{_fmt(st['ci_low'])}, {_fmt(st['ci_high'])}] n={st['n']}</td>"
                         if st else "<td></td>")
        for lb in labels[1:]:
            d = s["differences"][f"{lb}_vs_{labels[0]}"].get(suite, {}).get(metric)
            css = ""
            if d and _star(d):
                better = (d["diff"] > 0) == METRICS[metric].higher_is_better
                css = " class='better'" if better else " class='worse'"
            cells.append(f"<td{css}>{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]</td>" if d
                         else "<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table><p>Green: better than the first model with a 95% CI that excludes 0; red: worse.</p>")
    return "\n".join(rows)


def _safety_html(comparison: Comparison) -> str:
    s, e = comparison.summary, html.escape
    limit = s.get("max_toxicity_rate")
    out = ["<h2>Safety: toxicity rate of the answers</h2><table><tr><th>model</th><th>suite</th><th>rate</th>"
           "<th>95% CI</th><th>verdict</th></tr>"]
    for label, per_suite in s["models"].items():
        for suite, metrics in per_suite.items():
            t = metrics.get("toxicity_rate")
            if not t or t["mean"] is None:
                continue
            verdict = "–" if limit is None else ("<span class='bad'>over the limit</span>" if t["mean"] > limit
                                                 else "<span class='ok'>within the limit</span>")
            out.append(f"<tr><td>{e(label)}</td><td>{e(suite)}</td><td>{t['mean']:.3f}</td>"
                       f"<td>[{t['ci_low']:.3f}, {t['ci_high']:.3f}]</td><td>{verdict}</td></tr>")
    out.append("</table>")
    if limit is not None:
        out.append(f"<p>Limit (--max-toxicity-rate): {limit}</p>")
    return "\n".join(out)


def _contamination_html(comparison: Comparison) -> str:
    e = html.escape
    out = ["<h2>Contamination of the training data</h2><table><tr><th>model</th><th>suite</th><th>result</th></tr>"]
    for label, per_suite in comparison.summary["contamination"].items():
        for suite, c in per_suite.items():
            if c is None:
                text = "no adapter: no training data to check"
            elif not c.get("checked"):
                text = f"not checked: {c['reason']}"
            else:
                bad = c["contaminated"]
                text = (f"<span class='{'bad' if bad else 'ok'}'>{len(bad)} of {c['items_checked']} items "
                        f"contaminated</span> by {e(c['train'])}")
                if bad:
                    text += ": " + ", ".join(e(f["item"]) for f in bad[:20])
            out.append(f"<tr><td>{e(label)}</td><td>{e(suite)}</td><td>{text}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _judge_html(judge: dict[str, Any], suite: str) -> str:
    e = html.escape
    out = [f"<h3>LLM judge ({e(judge.get('model', ''))}), pairwise, both orders</h3><table><tr><th>pair</th>"
           "<th>win</th><th>tie</th><th>loss</th><th>unparsed verdicts</th><th>n</th></tr>"]
    for pair, per_suite in judge.get("pairs", {}).items():
        r = per_suite.get(suite)
        if not r:
            continue
        cells = "".join(f"<td>{r[k]['mean']:.3f} [{r[k]['ci_low']:.3f}, {r[k]['ci_high']:.3f}]</td>"
                        for k in ("win", "tie", "loss"))
        out.append(f"<tr><td>{e(pair)}</td>{cells}<td>{r['unparsed']}</td><td>{r['n']}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


ITEM_FIELDS = ("em", "f1", "rougeL", "grounded", "abstained", "items", "count_compliance", "unique_items",
               "relevance", "toxicity")


def _items_html(comparison: Comparison, suite: str, items: list[dict[str, Any]]) -> str:
    e = html.escape
    models = [m for m in comparison.models if suite in m.suites]
    out = [f"<h3>Item by item ({len(items)} items)</h3>"]
    for item in items:
        question = item.get("question") or item.get("prompt", "")
        out.append(f"<details><summary><b>{e(item['id'])}</b> {e(question)}</summary>")
        if item.get("context"):
            out.append(f"<details><summary>context</summary><div class='context'>{e(item['context'])}</div></details>")
        if item.get("references"):
            tag = "" if item.get("answerable", True) else " (unanswerable)"
            out.append(f"<p>references{tag}: " + " | ".join(e(r) for r in item["references"]) + "</p>")
        elif item.get("count"):
            out.append(f"<p>asks for {item['count']} ideas</p>")
        for m in models:
            result = m.suites[suite]
            if item["id"] not in result.answers:
                continue
            row = result.rows.get(item["id"], {})
            scores = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                               for k in ITEM_FIELDS if (v := row.get(k)) is not None)
            out.append(f"<p><b>{e(m.label)}</b> <small>{e(scores)}</small></p>"
                       f"<div class='answer'>{e(result.answers[item['id']])}</div>")
        out.append("</details>")
    return "\n".join(out)


def suite_items(comparison: Comparison) -> dict[str, list[dict[str, Any]]]:
    """Each suite's items for the item-by-item section: from the suite folder the results name, when it is still
    the same suite (sha256), else only the ids and questions the predictions carry."""
    from eval_suites.registry import load_suite

    found: dict[str, list[dict[str, Any]]] = {}
    for suite in comparison.suites:
        manifest = next(m.suites[suite].manifest for m in comparison.models if suite in m.suites)
        try:
            loaded = load_suite(manifest["suite_path"])
        except InputError:
            loaded = None
        if loaded is not None and loaded.sha256 == manifest["suite_sha256"]:
            found[suite] = loaded.items
        else:
            result = next(m.suites[suite] for m in comparison.models if suite in m.suites)
            found[suite] = [{"id": i, "question": result.questions.get(i, "")} for i in result.answers]
    return found


def write_report(comparison: Comparison, out_html: str | Path, suites_items: dict[str, list[dict[str, Any]]]) -> Path:
    """report.html and summary.json beside it, both written atomically; returns the summary's path."""
    out_html = Path(out_html)
    atomic_write_text(out_html, report_html(comparison, suites_items))
    summary_path = out_html.with_name("summary.json")
    atomic_write_text(summary_path, json.dumps(comparison.summary, indent=2) + "\n")
    return summary_path

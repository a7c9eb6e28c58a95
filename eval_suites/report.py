"""The comparison as people read it: summary.md (the tables), report.html (tables, plots, safety, contamination,
the judge's verdicts, every item's answers side by side) and summary.json; and the report stage's entry (`run`).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eval_suites.metrics import METRICS
from eval_suites.statistics import SUMMARY_METRICS, Comparison, compare
from workbench.core.backends import BackendConfig
from workbench.core.errors import InputError
from workbench.core.io import atomic_write_json, atomic_write_text
from workbench.core.runs import Outputs, StepResult


class ReportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: int = Field(1000, ge=10)  # resamples
    seed: int = 0  # the same seed gives the same CIs
    max_toxicity_rate: float | None = None  # a gate: a model whose answers are toxic more often than this fails


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


@dataclass
class ReportResult(StepResult):
    comparison: Comparison | None = None


def run(results: list[Path], config: ReportConfig, out: Outputs, judge: BackendConfig | None = None,
        api_key: str | None = None) -> ReportResult:
    """The report stage: the results folders of `eval run` compared (the first is the baseline) into
    out["report.html"], out["summary.json"] and out["summary.md"]. A toxicity rate over `max_toxicity_rate` is
    listed in the comparison's violations; what that stops is the caller's decision."""
    ledger = out.start(ReportStageConfig(settings=config, judge=judge), results, drops=False)
    comparison = compare(results, resamples=config.bootstrap, seed=config.seed,
                         max_toxicity_rate=config.max_toxicity_rate)
    items = suite_items(comparison)
    if judge:
        from eval_suites.judge import judge_all

        comparison.summary["judge"] = judge_all(judge, comparison.models, comparison.suites, items, config.bootstrap,
                                                config.seed, api_key)
    atomic_write_text(out["report.html"], report_html(comparison, items))
    atomic_write_json(out["summary.json"], comparison.summary)
    atomic_write_text(out["summary.md"], markdown(comparison))
    contaminated = sum(len(c["contaminated"]) for per in comparison.summary["contamination"].values()
                       for c in per.values() if c and c.get("checked"))
    counts = {"models": len(comparison.models), "suites": len(comparison.suites), "contaminated": contaminated}
    result = out.finish(ledger, counts, toxicity_violations=comparison.toxicity_violations)
    return ReportResult(result.manifest, result.problems, comparison)


class ReportStageConfig(BaseModel):
    """What decides a report: its settings and the judge, if any."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: ReportConfig
    judge: BackendConfig | None = None

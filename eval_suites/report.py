"""The comparison as people read it: summary.md (the tables), report.html (its answer first: each model against the
baseline on every suite's main metric in one sentence, the safety gate and contamination in one line each; then
tables, plots, safety, contamination, the judge's verdicts, every item's answers side by side, and what each metric
means) and summary.json; and the report stage's entry (`run`).
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eval_suites.metrics import METRICS, item_fields, summary_metrics
from eval_suites.statistics import Comparison, compare
from workbench.core.backends import BackendConfig
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.io import atomic_write_json, atomic_write_text
from workbench.core.runs import Outputs, StepResult


class ReportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: int = Field(1000, ge=10)  # resamples
    seed: int = 0  # the same seed gives the same CIs
    # a gate: a model whose answers are toxic more often than this fails
    max_toxicity_rate: float | None = Field(None, ge=0, le=1)


def _text(value: Any) -> str:
    """Text from data (a question, an answer, a label, an id) in HTML: escaped and isolated in <bdi>, so that a
    right-to-left character or override in it cannot reorder the page's own text around it (the scores)."""
    return f"<bdi>{html.escape(str(value))}</bdi>"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|~])")  # what changes a table cell (an _ inside a word does not)


def _md(value: Any) -> str:
    """Text from data in a Markdown table cell: one line, its Markdown characters (a `|` above all) escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(comparison: Comparison) -> str:
    """One Markdown table per suite: each model's mean [95% CI], and differences against the first model."""
    out = []
    labels = [m.label for m in comparison.models]
    for suite in comparison.suites:
        metrics = [x for x in summary_metrics()
                   if any(x in comparison.summary["models"][lb].get(suite, {}) for lb in labels)]
        out.append(f"### {_md(suite)}\n")
        header = ["metric", *map(_md, labels), *(f"{_md(lb)} − {_md(labels[0])}" for lb in labels[1:])]
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
    metrics = [x for x in summary_metrics()
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


# Text from data (answers, questions, labels) is wrapped anywhere, never wider than the page; a table wider than a
# phone scrolls inside itself.
CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222;
overflow-wrap:anywhere}
h1{margin:0 0 .2em}table{border-collapse:collapse;margin:1em 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}img{max-width:100%;height:auto}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.ci{white-space:nowrap}
.better{background:#dff5df}.worse{background:#f9dede}
.answer{white-space:pre-wrap;background:#f6f6f6;padding:6px;margin:4px 0;border-radius:4px}
details{margin:4px 0}.context{white-space:pre-wrap;font-size:90%;color:#555}.bad{color:#b00}.ok{color:#070}
#headline{border:2px solid #444;border-radius:6px;padding:.2em 1em .6em;margin:1em 0}
#headline p{margin:.4em 0;font-size:110%}.scores{color:#555;font-size:90%}
dl.metrics dt{font-weight:bold;float:left;clear:left;width:11em}dl.metrics dd{margin:0 0 .3em 12em}"""

# Re-sorts the item list of a suite; the page's only script, and it reads numbers the page itself wrote.
SORT_SCRIPT = """<script>
function sortItems(select){var list=document.getElementById(select.dataset.list);
var key=select.value,items=Array.from(list.children);
items.sort(function(a,b){if(key==='order')return a.dataset.order-b.dataset.order;
var x=parseFloat(a.dataset[key]),y=parseFloat(b.dataset[key]);if(isNaN(x))return 1;if(isNaN(y))return -1;
return x-y;});items.forEach(function(i){list.appendChild(i);});}
</script>"""


def main_metric(comparison: Comparison, suite: str) -> str | None:
    """The suite's headline metric (suite.yaml `headline`, else its first metric); for results whose suite
    folder is gone, the first metric they have other than the toxicity rate."""
    from eval_suites.registry import load_suite

    manifest = next(m.suites[suite].manifest for m in comparison.models if suite in m.suites)
    try:
        metric = load_suite(manifest["suite_path"]).config.main_metric
    except (InputError, KeyError, ValueError):
        metric = None
    have = {x for per in comparison.summary["models"].values() for x in per.get(suite, {})}
    if metric in have:
        return metric
    return next((x for x in summary_metrics() if x in have and x != "toxicity_rate"), None)


def _ci(d: dict[str, float], signed: bool = True) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"<span class='ci'>[{f.format(d['ci_low'])}, {f.format(d['ci_high'])}]</span>"


def headline_sentences(comparison: Comparison) -> list[tuple[str, str]]:
    """Per suite, each model against the first on the suite's main metric, in one plain sentence; then the
    safety gate and the contamination verdicts in one line each. (css class, HTML) pairs."""
    s = comparison.summary
    labels = [m.label for m in comparison.models]
    lines = []
    for suite in comparison.suites:
        metric = main_metric(comparison, suite)
        if metric is None:
            continue
        better_up = METRICS[metric].higher_is_better
        for label in labels[1:]:
            d = s["differences"][f"{label}_vs_{labels[0]}"].get(suite, {}).get(metric)
            if not d:
                continue
            what = f"{_text(suite)} {_text(metric)}"
            numbers = f"{d['diff']:+.3f} {_ci(d)}"
            if not _star(d):
                lines.append(("", f"No measurable difference between <b>{_text(label)}</b> and "
                                  f"<b>{_text(labels[0])}</b> on {what}: {numbers}."))
            elif (d["diff"] > 0) == better_up:
                lines.append(("ok", f"<b>{_text(label)}</b> beats <b>{_text(labels[0])}</b> on {what} by "
                                    f"{numbers}."))
            else:
                lines.append(("bad", f"<b>{_text(label)}</b> is worse than <b>{_text(labels[0])}</b> on {what} by "
                                     f"{numbers}."))
    lines.append(_safety_line(comparison))
    lines.append(_contamination_line(comparison))
    return lines


def _safety_line(comparison: Comparison) -> tuple[str, str]:
    s = comparison.summary
    limit = s.get("max_toxicity_rate")
    rates = [(t["mean"], label, suite) for label, per in s["models"].items() for suite, metrics in per.items()
             if (t := metrics.get("toxicity_rate")) and t["mean"] is not None]
    if not rates:
        return "", "Safety: no toxicity rate was measured."
    worst, label, suite = max(rates)
    if limit is None and worst == 0:
        return "", "Safety: no gate set (--max-toxicity-rate); no answer of any model was toxic (every rate 0.000)."
    if limit is None:
        return "", (f"Safety: no gate set (--max-toxicity-rate); the highest toxicity rate is {worst:.3f} "
                    f"({_text(label)} on {_text(suite)}).")
    over = [(r, lb, st) for r, lb, st in rates if r > limit]
    if not over:
        return "ok", f"Safety gate passed: every toxicity rate is at most {limit} (highest {worst:.3f})."
    listed = ", ".join(f"{_text(lb)} on {_text(st)} ({r:.3f})" for r, lb, st in over)
    return "bad", f"Safety gate failed: toxicity rate over {limit} for {listed}."


def _contamination_line(comparison: Comparison) -> tuple[str, str]:
    checked, contaminated, unchecked = 0, [], []
    for label, per_suite in comparison.summary["contamination"].items():
        for suite, c in per_suite.items():
            if c is None:
                continue
            if not c.get("checked"):
                unchecked.append(f"{_text(label)} on {_text(suite)}")
                continue
            checked += c["items_checked"]
            if c["contaminated"]:
                contaminated.append(f"{_text(label)} on {_text(suite)}: {len(c['contaminated'])}")
    if contaminated:
        return "bad", f"Contamination: training data overlaps eval items ({'; '.join(contaminated)})."
    if checked:
        note = f" Not checked: {', '.join(unchecked)}." if unchecked else ""
        return "ok", f"Contamination: none of {checked} eval items found in the training data.{note}"
    if unchecked:
        return "", f"Contamination: not checked ({', '.join(unchecked)})."
    return "", "Contamination: no finetuned model, so no training data to check."


def _headline_html(comparison: Comparison) -> str:
    lines = "".join(f"<p class='{css}'>{text}</p>" if css else f"<p>{text}</p>"
                    for css, text in headline_sentences(comparison))
    return (f"<section id='headline'><h2>The answer</h2>{lines}<p class='scores'>Differences against the first "
            "model with 95% paired bootstrap CIs over items; a CI that holds 0 is no measurable difference.</p>"
            "</section>")


def _definitions_html(comparison: Comparison) -> str:
    used = [m for m in summary_metrics()
            if any(m in per.get(suite, {}) for per in comparison.summary["models"].values()
                   for suite in comparison.suites)]
    rows = "".join(f"<dt>{m}</dt><dd>{html.escape(METRICS[m].description)} "
                   f"({'higher' if METRICS[m].higher_is_better else 'lower'} is better)</dd>" for m in used)
    return f"<h2 id='metrics'>What the metrics mean</h2><dl class='metrics'>{rows}</dl>"


def report_html(comparison: Comparison, suites_items: dict[str, list[dict[str, Any]]]) -> str:
    """The whole report as one self-contained HTML page (plots embedded), its answer first."""
    s, e = comparison.summary, html.escape
    labels = [m.label for m in comparison.models]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
             f"content='width=device-width, initial-scale=1'><title>Eval report</title><style>{CSS}</style>"
             f"{SORT_SCRIPT}</head><body><h1>Evaluation report</h1><p class='scores'>{_text(s['created'])} · "
             f"{len(labels)} model(s): {', '.join(e(lb) for lb in labels)} (the first is the baseline) · 95% "
             f"percentile bootstrap, {s['bootstrap']['resamples']} resamples, seed {s['bootstrap']['seed']}</p>",
             _headline_html(comparison),
             "<h2>Models</h2><table><tr><th>label</th><th>model</th><th>adapter</th><th>quant</th><th>backend</th>"
             "<th>results</th></tr>"]
    for label in labels:
        r = s["runs"][label]
        cells = "".join(f"<td>{_text(r.get(k) or '–')}</td>" for k in ("model", "adapter", "quant", "backend", "path"))
        parts.append(f"<tr><td>{_text(label)}</td>{cells}</tr>")
    parts.append("</table>")
    parts += _safety_html(comparison), _contamination_html(comparison)
    for suite in comparison.suites:
        parts.append(f"<h2 id='{e(suite)}'>{_text(suite)}</h2>")
        parts.append(_metrics_html(comparison, suite))
        parts.append(f"<img alt='{e(suite)} metrics' src='data:image/png;base64,{plot_suite(comparison, suite)}'>")
        if "judge" in s:
            parts.append(_judge_html(s["judge"], suite))
        parts.append(_items_html(comparison, suite, suites_items.get(suite, [])))
    parts.append(_definitions_html(comparison))
    parts.append("</body></html>")
    return "\n".join(parts)


def _metrics_html(comparison: Comparison, suite: str) -> str:
    s, e = comparison.summary, html.escape
    labels = [m.label for m in comparison.models]
    rows = ["<table><tr><th>metric</th>" + "".join(f"<th class='num'>{_text(lb)}</th>" for lb in labels)
            + "".join(f"<th class='num'>{_text(lb)} − {_text(labels[0])}</th>" for lb in labels[1:]) + "</tr>"]
    for metric in summary_metrics():
        stats = [s["models"][lb].get(suite, {}).get(metric) for lb in labels]
        if not any(stats):
            continue
        cells = [f"<td title='{e(METRICS[metric].description)}'><a href='#metrics'>{metric}</a></td>"]
        for st in stats:
            cells.append(f"<td class='num'>{_fmt(st['mean'])} <span class='ci'>[{_fmt(st['ci_low'])}, "
                         f"{_fmt(st['ci_high'])}]</span> n={st['n']}</td>" if st else "<td></td>")
        for lb in labels[1:]:
            d = s["differences"][f"{lb}_vs_{labels[0]}"].get(suite, {}).get(metric)
            css = ""
            if d and _star(d):
                better = (d["diff"] > 0) == METRICS[metric].higher_is_better
                css = " better" if better else " worse"
            cells.append(f"<td class='num{css}'>{d['diff']:+.3f} {_ci(d)}</td>" if d else "<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table><p>Green: better than the first model with a 95% CI that excludes 0; red: worse (for every "
                "metric, in its own direction: see <a href='#metrics'>what the metrics mean</a>).</p>")
    return "\n".join(rows)


def _safety_html(comparison: Comparison) -> str:
    s = comparison.summary
    limit = s.get("max_toxicity_rate")
    gate = "" if limit is None else f"<th>verdict (at most {limit})</th>"
    out = ["<h2>Safety: toxicity rate of the answers</h2><table><tr><th>model</th><th>suite</th>"
           f"<th class='num'>rate</th><th class='num'>95% CI</th>{gate}</tr>"]
    for label, per_suite in s["models"].items():
        for suite, metrics in per_suite.items():
            t = metrics.get("toxicity_rate")
            if not t or t["mean"] is None:
                continue
            verdict = "" if limit is None else ("<td><span class='bad'>fail</span></td>" if t["mean"] > limit
                                                else "<td><span class='ok'>pass</span></td>")
            out.append(f"<tr><td>{_text(label)}</td><td>{_text(suite)}</td><td class='num'>{t['mean']:.3f}</td>"
                       f"<td class='num'>{_ci(t, signed=False)}</td>{verdict}</tr>")
    out.append("</table>")
    description = METRICS["toxicity_rate"].description
    out.append(f"<p>Toxicity rate: the {description}. " + (
        "No gate was set: pass --max-toxicity-rate to fail a model over a rate.</p>" if limit is None else
        f"A model fails the gate when its rate is over {limit} (--max-toxicity-rate).</p>"))
    return "\n".join(out)


def _contamination_html(comparison: Comparison) -> str:
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
                        f"contaminated</span> by {_text(c['train'])}")
                if bad:
                    text += ": " + ", ".join(_text(f["item"]) for f in bad[:20])
            out.append(f"<tr><td>{_text(label)}</td><td>{_text(suite)}</td><td>{text}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _judge_html(judge: dict[str, Any], suite: str) -> str:
    out = [f"<h3>LLM judge ({_text(judge.get('model', ''))}), pairwise, both orders</h3><table><tr><th>pair</th>"
           "<th>win</th><th>tie</th><th>loss</th><th>unparsed verdicts</th><th>n</th></tr>"]
    for pair, per_suite in judge.get("pairs", {}).items():
        r = per_suite.get(suite)
        if not r:
            continue
        cells = "".join(f"<td>{r[k]['mean']:.3f} [{r[k]['ci_low']:.3f}, {r[k]['ci_high']:.3f}]</td>"
                        for k in ("win", "tie", "loss"))
        out.append(f"<tr><td>{_text(pair)}</td>{cells}<td>{r['unparsed']}</td><td>{r['n']}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _items_html(comparison: Comparison, suite: str, items: list[dict[str, Any]]) -> str:
    """Every item with each model's answer; its title shows each model's score on the suite's main metric, and
    the list can be sorted by the difference between a model and the first (worst first)."""
    e = html.escape
    models = [m for m in comparison.models if suite in m.suites]
    metric = main_metric(comparison, suite)
    fields = item_fields()  # the per-item fields the registered metrics show
    list_id = f"items-{suite}"
    choices = "".join(f"<option value='diff{k}'>{e(m.label)} − {e(models[0].label)} on {e(metric or '')}, "
                      f"{'lowest' if METRICS[metric].higher_is_better else 'highest'} first</option>"
                      for k, m in enumerate(models[1:], 1)) if metric else ""
    # Only the items some model answered (an eval run with --limit answers the first few): the count says so.
    answered = [item for item in items if any(item["id"] in m.suites[suite].answers for m in models)]
    of = f" of the suite's {len(items)}" if len(answered) < len(items) else ""
    items = answered
    out = [f"<h3>Item by item ({len(items)} items answered{of})</h3>"]
    if choices:
        out.append(f"<p><label>Sort: <select data-list='{e(list_id)}' onchange='sortItems(this)'>"
                   f"<option value='order'>suite order</option>{choices}</select></label></p>")
    out.append(f"<div id='{e(list_id)}'>")
    for number, item in enumerate(items):
        question = item.get("question") or item.get("prompt", "")
        scores = [m.suites[suite].rows.get(item["id"], {}).get(metric) if metric else None for m in models]
        sign = 1 if metric is None or METRICS[metric].higher_is_better else -1
        keys = "".join(f" data-diff{k}='{sign * (v - scores[0]):.6f}'" for k, v in enumerate(scores[1:], 1)
                       if isinstance(v, (int, float)) and isinstance(scores[0], (int, float)))
        shown = " · ".join(f"{_text(m.label)} {v:.2f}" for m, v in zip(models, scores)
                           if isinstance(v, (int, float)))
        title = f" <span class='scores'>{_text(metric)}: {shown}</span>" if shown else ""
        out.append(f"<details data-order='{number}'{keys}><summary><b>{_text(item['id'])}</b> {_text(question)}"
                   f"{title}</summary>")
        if item.get("context"):
            out.append(f"<details><summary>context</summary><div class='context' dir='auto'>{_text(item['context'])}"
                       "</div></details>")
        if item.get("references"):
            tag = "" if item.get("answerable", True) else " (unanswerable)"
            out.append(f"<p>references{tag}: " + " | ".join(_text(r) for r in item["references"]) + "</p>")
        elif item.get("count"):
            out.append(f"<p>asks for {item['count']} ideas</p>")
        for m in models:
            result = m.suites[suite]
            if item["id"] not in result.answers:
                continue
            row = result.rows.get(item["id"], {})
            line = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                             for k in fields if (v := row.get(k)) is not None)
            out.append(f"<p><b>{_text(m.label)}</b> <small>{_text(line)}</small></p>"
                       f"<div class='answer' dir='auto'>{_text(result.answers[item['id']])}</div>")
        out.append("</details>")
    out.append("</div>")
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

    def summary_lines(self) -> list[str]:
        """The comparison's tables (summary.md) and where the report went."""
        return [markdown(self.comparison),
                f"Report: {self.files['report.html']}; summary: {self.files['summary.json']}"]

    def error_lines(self) -> list[str]:
        """The toxicity gate's violations, as a command prints them (on stderr)."""
        return [f"Error: {violation}" for violation in self.comparison.toxicity_violations]

    def gate_error(self) -> WorkbenchError | None:
        """The toxicity gate (`max_toxicity_rate`): what stops a recipe run, and makes `eval compare` exit 1."""
        if not self.comparison.toxicity_violations:
            return None
        return WorkbenchError("; ".join(self.comparison.toxicity_violations),
                              hint=f"the report is in {self.files['report.html']}")


def run(results: list[Path], config: ReportConfig, out: Outputs, judge: BackendConfig | None = None,
        api_key: str | None = None, lead: tuple[str, ...] = ()) -> ReportResult:
    """The report stage: the results folders of `eval run` compared (the first is the baseline) into
    out["report.html"], out["summary.json"] and out["summary.md"]. A toxicity rate over `max_toxicity_rate` is
    listed in the comparison's violations; what that stops is the caller's decision."""
    ledger = out.start(ReportStageConfig(settings=config, judge=judge, lead=lead), results, drops=False)
    comparison = compare(results, resamples=config.bootstrap, seed=config.seed,
                         max_toxicity_rate=config.max_toxicity_rate, lead=lead)
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
    lead: tuple[str, ...] = ()  # the suites shown first (a recipe's: its own suite, then the others it names)

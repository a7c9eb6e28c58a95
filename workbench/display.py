"""Rich renderings of library results, shared by the CLI commands (no CLI framework here)."""

from __future__ import annotations

import json
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbench.core.stats import Stats

console = Console(soft_wrap=True)  # long paths stay on one line, copy-pastable
err_console = Console(stderr=True, soft_wrap=True)


def stats_tables(stats: Stats, title: str) -> list[Table]:
    categories = Table(title=f"{title}: {stats.records:,} records")
    for column in ("category", "records", "share", "Dolly-15k share"):
        categories.add_column(column, justify="left" if column == "category" else "right")
    for name, count, share, dolly in stats.category_rows():
        categories.add_row(name, f"{count:,}", f"{share:.1f}%", f"{dolly:.1f}%" if dolly else "-")
    tables = [categories]
    for unit, lengths in (("words", stats.words), ("tokens", stats.tokens)):
        if not lengths:
            continue
        table = Table(title=f"Length in {unit}")
        for column in ("field", "p50", "p90", "p99", "max", "mean"):
            table.add_column(column, justify="left" if column == "field" else "right")
        for field, summary in lengths.items():
            table.add_row(field, *(f"{summary[k]:.0f}" for k in ("p50", "p90", "p99", "max")),
                          f"{summary['mean']:.1f}")
        tables.append(table)
    sources = Table(title="Sources")
    sources.add_column("source")
    sources.add_column("records", justify="right")
    for name, count in stats.sources.items():
        sources.add_row(name, f"{count:,}")
    tables.append(sources)
    return tables


@contextmanager
def progress_bar(description: str):
    """A rich progress bar; yields a callback(done, total) for the library's long loops."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextmanager
def progress_tasks():
    """One rich progress display with a bar per task; yields new_task(description) -> callback(done, total)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=False) as progress:
        def new_task(description: str):
            task = progress.add_task(description, total=None)
            return lambda done, total: progress.update(task, completed=done, total=total)

        yield new_task


def metrics_table(title: str, metrics: dict, extra: dict | None = None) -> Table:
    """A metric -> value table (values None print as '–', with how many items each applied to)."""
    table = Table(title=title)
    for column in ("metric", "value", "items"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, m in metrics.items():
        table.add_row(name, "–" if m["value"] is None else f"{m['value']:.3f}", str(m["n"]))
    for name, value in (extra or {}).items():
        table.add_row(name, str(value), "")
    return table


def eval_run_summary(runs) -> None:
    """A metrics table per suite run, with where the answers came from and the contamination check."""
    for run in runs:
        m = run.manifest
        extra = {"answers": f"{m['cache']['hits']} cached, {m['cache']['generated']} generated"}
        c = m["contamination"]
        if c:
            extra["contamination"] = (f"{len(c['contaminated'])} of {c['items_checked']} items" if c["checked"]
                                      else f"not checked: {c['reason']}")
        console.print(metrics_table(f"{m['name']} on {run.suite.name} ({m['items']} items)", run.scores.metrics,
                                    extra))
        for note in run.scores.notes:
            err_console.print(f"Note: {note}")


def next_token_tables(steps, labels: list[str]) -> list[Table]:
    """One table per step: rank, then each model's token, probability and a bar."""
    tables = []
    for n, row in enumerate(steps, start=1):
        shown = row[0].text if len(row[0].text) <= 70 else "…" + row[0].text[-69:]
        table = Table(title=f"Step {n}: after {shown!r}")
        table.add_column("#", justify="right")
        for label, step in zip(labels, row):
            table.add_column(f"{label} token")
            table.add_column(f"p (top {len(step.choices)}: {step.covered:.2f})", justify="right")
        for rank in range(max(len(step.choices) for step in row)):
            cells = [str(rank + 1)]
            for step in row:
                choice = step.choices[rank] if rank < len(step.choices) else None
                cells += [repr(choice.text), f"{choice.probability:.3f} {'█' * round(choice.probability * 10)}"] \
                    if choice else ["", ""]
            table.add_row(*cells)
        tables.append(table)
    return tables


def runs_table(runs: list[dict]) -> Table:
    table = Table(title="Runs")
    for column in ("run", "stages done", "last finished", "stage time (s)", "folder"):
        table.add_column(column, justify="right" if column in ("stages done", "stage time (s)") else "left")
    for r in runs:
        table.add_row(r["run"], f"{r['done']}/{r['stages']}", r["last"], f"{r['seconds']:.1f}", r["path"])
    return table


def stage_lines(run: str, stages: list[dict]) -> list[str]:
    """A run's stages as text blocks (stage, status, time, counts, files, rejection reasons)."""
    lines = [f"Run {run}: {len(stages)} stages"]
    for s in stages:
        lines.append(f"{s['stage']}: {s['status']}, {s['seconds'] or 0:.1f} s, finished {s['finished']} ({s['path']}/)")
        lines.append("    " + ", ".join(f"{k} {v:,}" for k, v in s["counts"].items()))
        lines.append("    files: " + ", ".join(s["files"]))
        lines += [f"    {n:,}  {reason}" for reason, n in sorted(s["ledger"].items(), key=lambda kv: -kv[1])]
    return lines


def doctor_table(checks) -> Table:
    table = Table(title="workbench doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    for c in checks:
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.detail, c.fix)
    return table


def trace_lines(t: dict) -> list[str]:
    """A record's life as text: what it is, each lineage event, its cluster, adapters and contamination."""
    r = t["record"]
    lines = [f"Record {t['id']}: {t['status']} ({t['run']})",
             f"  instruction: {r['instruction'][:200]}", f"  context: {(r.get('context') or '–')[:120]}",
             f"  response: {(r.get('response') or '–')[:200]}", f"  category: {r.get('category')}, "
             f"source: {r.get('source')}", "Timeline:"]
    for e in r.get("lineage", []):
        detail = e.get("detail") or {}
        if isinstance(detail, dict):
            detail = {k: v for k, v in detail.items() if k != "params"}  # sampling settings: in the manifest
        shown = json.dumps(detail, ensure_ascii=False) if detail else ""
        lines.append(f"  {e['stage']:<12} {e['action']:<7} {e.get('reason') or ''} {shown[:220]}".rstrip())
    if r.get("scores"):
        lines.append("Scores: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in r["scores"].items()))
    if t["parent"]:
        lines.append(f"Made from {t['parent']['id']} ({t['parent']['stage']}): {t['parent']['instruction'][:120]}")
    if t["dedup_cluster"]:
        lines.append(f"Dedup cluster: {json.dumps(t['dedup_cluster'], ensure_ascii=False)[:300]}")
    lines.append("Found in: " + ", ".join(p["file"] for p in t["places"]))
    lines += [f"Trained into: {a['adapter']} ({a['used']}; base {a['base']})" for a in t["adapters"]] or \
        ["Trained into: no adapter in this run"]
    lines += [f"Contaminates: {c['suite']} item {c['item']} ({c['question'][:80]})" for c in t["contaminated"]] or \
        ["Contaminates: no eval item (of the suites checked in this run)"]
    return lines


def run_summary(result) -> None:
    """What a recipe run did: each stage's state and counts, rejection reasons, the report, what it waits for."""
    if result.plan:
        console.print(f"Dry run of {result.run_dir}: nothing was run")
        for stage, action, why in result.plan:
            console.print(f"  {stage:<16} {'would run' if action == 'run' else 'skipped'}: {why}")
        return
    for outcome in result.outcomes:
        state = "skipped (unchanged)" if outcome.skipped else f"done in {outcome.manifest['seconds']:.1f} s"
        counts = ", ".join(f"{k} {v:,}" for k, v in outcome.manifest["counts"].items())
        console.print(f"[bold]{outcome.stage.name}[/]: {state} — {counts}  ({outcome.stage.dir})")
        for reason, n in sorted(outcome.manifest["ledger"].items(), key=lambda kv: -kv[1]):
            console.print(f"    {n:,}  {reason}")
    if result.pending:
        console.print(f"[bold]Waiting[/]: {result.pending}", markup=True, highlight=False)
        return
    if result.stats:
        for table in stats_tables(result.stats, "Seed tasks"):
            console.print(table)
    if result.programmes:
        console.print(f"Catalog: {len(result.programmes)} programmes, "
                      f"{sum(p['programming_required'] for p in result.programmes)} require programming")
    if result.report:
        console.print(result.report.with_name("summary.md").read_text(), markup=False)
        console.print(f"Report: {result.report}")
    if result.argilla:
        data_dir = result.run_dir / "review" / "argilla"
        console.print(f"Argilla (kept running): {result.argilla.api_url} — user {result.argilla.credentials.username}, "
                      f"password in {data_dir / 'credentials.json'}; stop it with "
                      f"`workbench annotate stop --data-dir {data_dir}`")
    console.print(f"Run folder: {result.run_dir}")


def generation_summary(result, output, rejected) -> None:
    resumed = " (resumed)" if result.resumed else ""
    console.print(f"Kept {result.kept:,} records in {output}; {result.rejected:,} rejected in {rejected}{resumed}")
    for reason, count in result.reasons.most_common():
        console.print(f"  {count:,}  {reason}")
    if result.usage:
        console.print(f"Tokens: {result.usage.get('prompt_tokens', 0):,} prompt, "
                      f"{result.usage.get('completion_tokens', 0):,} completion, "
                      f"{result.usage.get('requests', 0):,} requests")


def dedup_dry_run_table(rows) -> Table:
    table = Table(title="Dry run: records removed at each threshold (nothing written)")
    for column in ("threshold", "removed", "example pairs in this band (similarity)"):
        table.add_column(column, justify="left" if column.startswith("example") else "right")
    for row in rows:
        examples = "\n".join(f"{s:.2f}: {a[:60]!r} ~ {b[:60]!r}" for a, b, s in row.examples) or "-"
        table.add_row(f"{row.threshold:.2f}", f"{row.removed:,}", examples)
    return table


def screen_summary(result, records, dry_run: bool) -> None:
    console.print(f"Scorer: {result.scorer}" + (" (dry run: nothing written)" if dry_run else ""))
    for route in ("pass", "review", "reject"):
        console.print(f"  {route}: {result.counts.get(route, 0):,}")
    if dry_run:
        top = sorted(records, key=lambda r: -r.scores.get("toxicity_max", 0))[:5]
        for record in top:
            console.print(f"  {record.scores['toxicity_max']:.3f}  {record.instruction[:80]!r}", markup=False)
    if result.int8_deviation is not None:
        console.print(f"  int8: largest score change against fp32 on the first texts: {result.int8_deviation:.4f}")
    for label, shares in result.bias.items():
        console.print(f"  mentions {label}: " + ", ".join(f"{r} {v:.1%}" for r, v in shares.items()))


def pull_summary(pulled, paths: dict) -> None:
    console.print(f"Curated {len(pulled.curated):,} records in {paths['curated']}; "
                  f"{len(pulled.disputed):,} disputed in {paths['disputed']}; "
                  f"{len(pulled.discarded):,} discarded in {paths['discarded']}")
    corrected = sum(1 for r in pulled.curated if r.lineage and r.lineage[-1].get("action") == "edit")
    waiting = f"; {pulled.unchanged:,} already pulled" if pulled.unchanged else ""
    console.print(f"{corrected:,} corrected by annotators; {pulled.pending:,} not yet complete{waiting}")
    for reason, n in pulled.ledger.counts.most_common():
        console.print(f"  {n:,}  {reason}")


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def agreement_tables(result, title: str) -> list[Table]:
    questions = Table(title=f"Agreement in {title} (records answered by two or more annotators)")
    for column in ("question", "records", "percent agreement", "Krippendorff's alpha"):
        questions.add_column(column, justify="left" if column == "question" else "right")
    pairs = Table(title="Cohen's kappa per pair of annotators")
    for column in ("question", "annotators", "records", "kappa"):
        pairs.add_column(column, justify="right" if column in ("records", "kappa") else "left")
    for q in result.questions:
        percent = "-" if q.percent is None else f"{100 * q.percent:.1f}%"
        questions.add_row(q.question, f"{q.items:,}", percent, _number(q.alpha))
        for (a, b), (kappa, n) in q.kappa.items():
            pairs.add_row(q.question, f"{a} / {b}", f"{n:,}", _number(kappa))
    people = Table(title="Annotators")
    columns = ("submitted", "draft", "discarded", "keep", "discard", "corrected")
    people.add_column("annotator")
    for column in columns:
        people.add_column(column, justify="right")
    for name, counts in sorted(result.annotators.items()):
        people.add_row(name, *(f"{counts.get(c, 0):,}" for c in columns))
    return [questions, pairs, people]



def dry_run_report(report, config) -> None:
    console.print(f"{report.examples:,} records: {report.train:,} to train, {report.eval:,} held out; "
                  f"{len(report.too_long):,} longer than {config.max_length} tokens (dropped), "
                  f"{report.no_response:,} without a response (dropped)")
    for record_id, tokens in report.too_long[:5]:
        console.print(f"  too long: {record_id} ({tokens:,} tokens)")
    console.print(f"Format: {'the tokenizer chat template' if report.chat_template else 'Dolly-style sections'}; "
                  f"{report.tokens:,} trained tokens per epoch")
    console.print("First example — [dim]masked (no loss)[/] then [bold green]trained[/]:")
    console.print("[dim]<<MASKED>>[/]", end="")
    console.print(report.masked_text, style="dim", end="", markup=False, highlight=False)
    console.print("[bold green]<<TRAINED>>[/]", end="")
    console.print(report.trained_text, style="bold green", markup=False, highlight=False)
    console.print(f"{report.masked_tokens} masked tokens, {report.trained_tokens} trained tokens")
    missing = report.response_key_missing
    console.print(f"Response key found in every example: {'yes' if not missing else f'NO ({len(missing)} missing)'}; "
                  f"EOS is a trained token: {'yes' if report.eos_trained else 'NO'}")


def finetune_summary(result) -> None:
    m = result.manifest
    losses = m["train_loss"]
    first, last = (losses[0]["loss"], losses[-1]["loss"]) if losses else (float("nan"), float("nan"))
    evaluated = f", eval loss {m['final_eval_loss']:.3f}" if m["final_eval_loss"] is not None else ""
    console.print(f"Adapter in {result.out_dir}: {m['steps']} steps, {m['epochs']:.2f} epochs on "
                  f"{m['train_examples']:,} examples ({m['quant']}, {m['quantized_layers']} quantized layers); "
                  f"train loss {first:.3f} -> {last:.3f}{evaluated}")
    console.print(f"{m['useful_tokens_per_s']:,} trained tokens/s; peak memory {m['peak_memory_gib']:.2f} GiB "
                  f"(estimated {m['estimated_memory_gib']:.2f}); manifest.json and loss.png beside the adapter")

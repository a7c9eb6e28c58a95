"""Rich renderings of library results, shared by the CLI commands (no CLI framework here)."""

from __future__ import annotations

import json
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbench.core.runs import reason_lines
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


def metrics_table(title: str, metrics, extra: dict | None = None) -> Table:
    """A metric -> value table of `MetricValue`s (values None print as '–', with how many items each applied to)."""
    table = Table(title=title)
    for column in ("metric", "value", "items"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric in metrics:
        table.add_row(metric.name, metric.shown, str(metric.n))
    for name, value in (extra or {}).items():
        table.add_row(name, str(value), "")
    return table


def eval_run_summary(result) -> None:
    """A metrics table per suite, with where the answers came from and the contamination check."""
    for run in result.runs:
        console.print(metrics_table(run.title, run.scores.values, run.extra_rows()))
        for line in run.scores.note_lines():
            err_console.print(line)
    for line in result.summary_lines():
        console.print(line, markup=False)


def score_summary(result) -> None:
    """A scored predictions file (`runner.ScoredFile`): its metrics, then what was skipped or missing on stderr."""
    console.print(metrics_table(result.title, result.scores.values))
    for line in result.warning_lines():
        err_console.print(line)


def judge_agreement_summary(result, output=None, shown: int = 5) -> None:
    """The judge's agreement with people (`JudgeAgreement`): its summary lines, then the pairs it gets wrong."""
    for line in result.summary_lines():
        console.print(line, markup=False)
    rows = result.disagreement_rows(shown)
    if rows:
        table = Table(title=result.disagreement_title(shown))
        for column in result.DISAGREEMENT_COLUMNS:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if output is not None:
        console.print(f"Every pair with both labels: {output}", markup=False)


def compare_summary(result) -> None:
    """A comparison (`ReportResult`): its tables and where the report went, then the gate's violations on stderr."""
    for line in result.summary_lines():
        console.print(line, markup=False)
    for line in result.error_lines():
        err_console.print(line)


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
        if s["status"] == "unreadable":
            lines.append(f"{s['stage']}: unreadable: {s['problem']}")
            continue
        lines.append(f"{s['stage']}: {s['status']}, {s['seconds'] or 0:.1f} s, finished {s['finished']} ({s['path']}/)")
        lines.append("    " + ", ".join(f"{k} {v:,}" for k, v in s["counts"].items()))
        lines.append("    files: " + ", ".join(s["files"]))
        lines += [f"    {line}" for line in reason_lines(s["ledger"])]
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
    lines += [f"Ledger: {v['stage']} {v['action']}: {v['reason']}" for v in t["verdicts"]]
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
        for line in reason_lines(outcome.manifest["ledger"]):
            console.print(f"    {line}", markup=False, highlight=False)
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


def problems_summary(problems, quarantine: str | None) -> None:
    """The first bad input lines, and where all of them went."""
    for problem in problems[:5]:
        err_console.print(str(problem), markup=False, highlight=False)
    more = " (first 5 shown)" if len(problems) > 5 else ""
    err_console.print(f"{len(problems)} bad line(s) quarantined to {quarantine}{more}", markup=False)


def show(result) -> None:
    """A stage's result as it describes itself (its summary lines), then its bad input lines on stderr."""
    lines(result.summary_lines())
    if result.problems:
        problems_summary(result.problems, result.quarantine_file)


step_summary = show  # what a command shows after running a stage


def dedup_dry_run_table(rows, problems) -> None:
    table = Table(title="Dry run: records removed at each threshold (nothing written)")
    for column in ("threshold", "removed", "example pairs in this band (similarity)"):
        table.add_column(column, justify="left" if column.startswith("example") else "right")
    for row in rows:
        examples = "\n".join(f"{s:.2f}: {a[:60]!r} ~ {b[:60]!r}" for a, b, s in row.examples) or "-"
        table.add_row(f"{row.threshold:.2f}", f"{row.removed:,}", examples)
    console.print(table)
    if problems:
        problems_summary(problems, "nowhere (a dry run writes nothing)")


def screen_preview(screened, records, problems, scorer: str) -> None:
    """A screen dry run: the routes and the five highest scores (pipelines.screen.Screened.preview_lines)."""
    lines(screened.preview_lines(records, scorer))
    if problems:
        problems_summary(problems, "nowhere (a dry run writes nothing)")


def served_summary(served, where) -> None:
    state = "already running" if served.already_running else "started"
    console.print(f"Argilla {state}: {served.api_url}  (data: {where}; Redis: {served.redis})")
    console.print(f"Log in as [bold]{served.credentials.username}[/] with the password in {where}/credentials.json; "
                  f"stop it with `workbench annotate stop`.")


def push_summary(result) -> None:
    lines(result.summary_lines())


def pull_summary(result) -> None:
    lines(result.summary_lines())
    for problem in result.review_problems:
        err_console.print(problem, markup=False)


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def agreement_tables(result, title: str) -> list[Table]:
    questions = Table(title=f"Agreement in {title} (records answered by two or more annotators)")
    for column in ("question", "records", "percent agreement", "Krippendorff's alpha"):
        questions.add_column(column, justify="left" if column == "question" else "right")
    pairs = Table(title="Per pair of annotators: Cohen's kappa (a ranking: mean Kendall's tau)")
    for column in ("question", "annotators", "records", "kappa / tau"):
        pairs.add_column(column, justify="right" if column in ("records", "kappa / tau") else "left")
    for q in result.questions:
        if q.question == "ranking" and not q.items:
            continue  # not a comparison dataset
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


def dpo_dry_run_report(report, config) -> None:
    console.print(f"{report.pairs:,} preference pairs; {len(report.too_long):,} longer than {config.max_length} "
                  "tokens (dropped)")
    for pair_id, tokens in report.too_long[:5]:
        console.print(f"  too long: {pair_id} ({tokens:,} tokens)", markup=False)
    prompt, chosen, rejected = report.tokens
    console.print(f"First pair — [dim]prompt ({prompt} tokens, no loss)[/], then [bold green]chosen ({chosen})[/] "
                  f"over [bold red]rejected ({rejected})[/], each followed by EOS:")
    console.print(report.prompt, style="dim", markup=False, highlight=False)
    console.print(report.chosen, style="bold green", markup=False, highlight=False)
    console.print(report.rejected, style="bold red", markup=False, highlight=False)


def contamination_summary(result) -> None:
    """A contamination check (`ContaminationResult`): its summary lines, then its bad input lines on stderr."""
    for line in result.summary_lines():
        console.print(line, markup=False)
    if result.problems:
        problems_summary(result.problems, result.quarantine_file)


def answer(assistant, question: str, previous=None, max_new_tokens: int = 128, prefix: str = ""):
    """Stream the assistant's answer, saying (on stderr) which catalog page grounds it; returns that page, which a
    follow-up that names no programme keeps."""
    page = assistant.page_for(question, previous)
    if assistant.retriever:
        err_console.print(f"[dim]Context: {page.name} ({page.path})[/]" if page else "[dim]Context: none matched[/]")
    console.print(prefix, end="")
    for piece in assistant.answer(question, page, max_new_tokens):
        console.print(piece, end="", markup=False, highlight=False)
    console.print()
    return page


def lines(texts: list[str]) -> None:
    for line in texts:
        console.print(line, markup=False, highlight=False)


def questions():
    """Questions typed at a `you>` prompt, until `exit`, `quit`, Ctrl-D or Ctrl-C."""
    while True:
        try:
            question = console.input("[bold]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            return
        if question.lower() in ("exit", "quit"):
            return
        if question:
            yield question


def suites_table(suites) -> Table:
    table = Table(title="Eval suites")
    for column in ("suite", "items", "task", "metrics", "folder"):
        table.add_column(column)
    for suite in suites:
        table.add_row(suite.name, str(len(suite.items)), suite.config.task, ", ".join(suite.config.metrics),
                      str(suite.path))
    return table

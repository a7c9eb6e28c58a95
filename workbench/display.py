"""Rich renderings of library results, shared by the CLI commands (no CLI framework here)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbench.core.runs import RUN_COLUMNS, run_rows
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
    for unit in ("words", "tokens"):
        rows = stats.length_rows(unit)
        if not rows:
            continue
        table = Table(title=f"Length in {unit}")
        for column in ("field", *stats.LENGTH_COLUMNS):
            table.add_column(column, justify="left" if column == "field" else "right")
        for row in rows:
            table.add_row(*row)
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
    """A rich progress bar; yields a callback(done, total) for the library's long loops. The bar appears at the first
    step, so a command that stops on its options or inputs (before any work) shows its error alone."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console, transient=False)
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task(description, total=None)
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if task is not None:
            progress.stop()


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
    for column in RUN_COLUMNS:
        table.add_column(column, justify="right" if column in ("stages done", "stage time (s)") else "left")
    for row in run_rows(runs):
        table.add_row(*row)
    return table


def doctor_table(checks) -> Table:
    table = Table(title="workbench doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    for c in checks:
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.detail, c.fix)
    return table


def run_summary(result) -> None:
    """What a recipe run did: each stage's state and counts, rejection reasons, the report, what it waits for."""
    lines(result.stage_lines())
    if result.plan or result.pending:
        return
    for table in stats_tables(result.stats, "Seed tasks") if result.stats else []:
        console.print(table)
    lines(result.closing_lines())


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


def progress_table(students, title: str) -> Table:
    """`annotate progress`: a row per student (annotation.progress.StudentProgress); flags below the table."""
    table = Table(title=f"Progress in {title} (agreement: with the majority of the others, on records they decided)")
    for column in ("student", "submitted", "discarded", "drafts", "compared", "agreement", "kappa", "s / record",
                   "flagged"):
        table.add_column(column, justify="left" if column == "student" else "right")
    for s in students:
        agreement = "-" if s.agreement is None else f"{100 * s.agreement:.0f}%"
        pace = "-" if s.seconds_per_record is None else f"{s.seconds_per_record:.1f}"
        table.add_row(s.username, f"{s.submitted:,}", f"{s.discarded:,}", f"{s.drafts:,}", f"{s.compared:,}",
                      agreement, _number(s.kappa), pace, "yes" if s.flags else "")
    return table



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

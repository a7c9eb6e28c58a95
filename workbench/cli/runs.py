"""The whole loop and what it left: `workbench demo`, `run`, `runs list/show`, `trace`, `doctor`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer

from workbench import api, display
from workbench.cli.base import AsJson, RunsDir, group, opt
from workbench.core.runs import list_runs, stage_lines, stage_summaries
from workbench.display import console

runs_app = group("Run folders: what ran, when, and what it made.")
GROUPS = {"runs": runs_app}
KeepServer = Annotated[bool, opt("Leave the Argilla server running to browse the review.")]


def _run(run, **settings) -> None:
    with console.status("Running the recipe...") as status:
        result = run(on_stage=lambda stage: status.update(f"Stage: {stage}"), **settings)
    display.run_summary(result)


def demo_command(
    runs_dir: RunsDir = Path("runs"), name: Annotated[str, opt("The run's name.")] = "demo",
    force: Annotated[bool, opt("Redo stages that are already done.")] = False, keep_server: KeepServer = False,
    review: Annotated[str, opt("auto: three clearly labelled demo reviewers; manual: people review in the local "
                               "Argilla UI (the run stops and resumes).")] = "auto",
):
    """Run the embedded tiny recipe offline on the bundled catalog and seed tasks (what `make demo` runs).

    Example: workbench demo --runs-dir runs"""
    _run(api.demo, runs_dir=runs_dir, name=name, review_mode=review, force=force, keep_server=keep_server)


def init_command(
    directory: Annotated[Path, typer.Argument(help="Where to write recipe.yaml (made if missing).")],
    pages: Annotated[Path, opt("A folder of your university's pages: Markdown, text, HTML saved from the site, PDF.",
                               "--pages")],
    suite: Annotated[Path | None, opt("A folder in the suite format (suite.yaml + items.jsonl): the report measures "
                                      "the advisor on it.")] = None,
    tiny: Annotated[bool, opt("The offline tiny pair, trained on these pages (CPU, minutes), instead of "
                              "falcon-7b-instruct and falcon-7b.")] = False,
    force: Annotated[bool, opt("Write over an existing recipe.yaml.")] = False,
):
    """Start a course advisor for your own pages: read them, say what was found, write a recipe and the command that
    runs it.

    Example: workbench init my-advisor --pages saved-pages/ --suite my-suite/ --tiny"""
    display.lines(api.init(directory, pages, suite=suite, tiny=tiny, force=force).summary_lines())


def run_command(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML file (see recipes/).")],
    name: Annotated[str | None, opt("The run's name (default: the recipe's name).")] = None,
    runs_dir: RunsDir = Path("runs"), keep_server: KeepServer = False,
    from_stage: Annotated[str | None, opt("Start at this stage (generate, dedup, screen, review, finetune, eval, "
                                          "report); earlier ones must be done.", "--from")] = None,
    until: Annotated[str | None, opt("Stop after this stage.")] = None,
    force: Annotated[bool, opt("Redo the selected stages even when unchanged.")] = False,
    dry_run: Annotated[bool, opt("Say which stages would run and why; run nothing.")] = False,
    review: Annotated[str | None, opt("auto or manual (overrides the recipe).")] = None,
    allow_empty: Annotated[bool, opt("Go on when a stage read records and kept none (it stops the run).",
                                     "--allow-empty")] = False,
):
    """Run a recipe: generate, dedup, screen, review, finetune, eval, report; unchanged stages are skipped.

    Example: workbench run recipes/course-advisor-tiny.yaml --name try-1 --from screen --dry-run"""
    from workbench.recipe import load_recipe

    loaded = load_recipe(recipe)  # a bad recipe is named before the spinner starts
    _run(lambda **settings: api.run_recipe(loaded, **settings), name=name, runs_dir=runs_dir, review_mode=review,
         force=force, from_stage=from_stage, until=until, dry_run=dry_run, keep_server=keep_server,
         allow_empty=allow_empty)


@runs_app.command("list")
def runs_list(runs_dir: RunsDir = Path("runs"), as_json: AsJson = False):
    """The runs in the runs folder, with their stages and timings.

    Example: workbench runs list --runs-dir runs"""
    runs = list_runs(runs_dir)
    click.echo(json.dumps(runs, indent=2)) if as_json else console.print(display.runs_table(runs))


@runs_app.command("show")
def runs_show(run: Annotated[str, typer.Argument(help="A run's name (in --runs-dir) or folder.")],
              runs_dir: RunsDir = Path("runs"), as_json: AsJson = False):
    """A run's stages: status, timings, counts, rejection reasons and where their files are.

    Example: workbench runs show demo"""
    folder = Path(run) if Path(run).is_dir() else runs_dir / run
    stages = stage_summaries(folder)
    if as_json:
        return click.echo(json.dumps({"run": folder.name, "path": str(folder), "stages": stages}, indent=2))
    display.lines(stage_lines(folder.name, stages))


def doctor_command(as_json: AsJson = False):
    """Check Python, torch, CUDA, real 8-bit loading, the Argilla server environment, Redis, the hub and disk.

    Example: workbench doctor"""
    from workbench.doctor import run_checks

    checks = run_checks()
    click.echo(json.dumps([c.to_dict() for c in checks], indent=2)) if as_json else \
        console.print(display.doctor_table(checks))
    raise typer.Exit(1 if any(c.status == "fail" for c in checks) else 0)


def trace_command(record_id: Annotated[str, typer.Argument(help="A record id (or a unique prefix of one).")],
                  run: Annotated[Path, opt("The run folder.")] = Path("runs/demo"), as_json: AsJson = False):
    """A record's whole life in a run: origin, every filter verdict, dedup, screen, review, adapters, contamination.

    Example: workbench trace eb2ac551 --run runs/demo"""
    from workbench.trace import trace, trace_lines

    found = trace(run, record_id)
    if as_json:
        return click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    display.lines(trace_lines(found))


def register(app) -> None:
    for name, command in (("demo", demo_command), ("init", init_command), ("run", run_command),
                          ("doctor", doctor_command), ("trace", trace_command)):
        app.command(name)(command)

"""`workbench eval ...`: list suites, run a model on them, score predictions, compare models, check a judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer

from eval_suites.registry import list_suites, load_suite
from workbench import api, display
from workbench.cli.base import (
    AdapterOption,
    AsJson,
    ModelName,
    Strict,
    SuitesDir,
    group,
    opt,
    quarantined,
    sibling,
    warn,
)
from workbench.cli.options import BACKEND, ENDPOINT, JUDGE, Endpoint, Judge, grouped
from workbench.core.io import atomic_write_json, refuse_overwrite
from workbench.display import console

eval_app = group("Evaluate models on suites (closed_qa, brainstorming, course_advisor) and compare them.")
suite_app = group("Suites of your own: draft one from your pages.")
eval_app.add_typer(suite_app, name="suite")
GROUPS = {"eval": eval_app}
Bootstrap = Annotated[int, typer.Option(help="Bootstrap resamples (at least 10).", min=10)]


@eval_app.command("list")
def eval_list(suites_dir: SuitesDir = None):
    """The eval suites that can be named with --suite.

    Example: workbench eval list --suites-dir my-suites"""
    console.print(display.suites_table([load_suite(name, suites_dir) for name in list_suites(suites_dir)]))


@eval_app.command("run")
@grouped
def eval_run(
    suite: Annotated[list[str], opt("Suite name or folder (repeat the flag).", "--suite")], model: ModelName,
    output: Annotated[Path, opt("Results folder (one subfolder per suite).", "-o", "--output")],
    adapter: AdapterOption = None,
    name: Annotated[str | None, opt("Label in reports (default: the adapter's or model's name).")] = None,
    endpoint: Endpoint = ENDPOINT,
    quant: Annotated[str, opt("none, 8bit or 4bit (transformers).")] = BACKEND.quant,
    max_new_tokens: Annotated[int | None, opt("Tokens generated per prompt at most.")] = None,
    batch_size: Annotated[int | None, opt("Prompts per batch (transformers backend).")] = None,
    suites_dir: SuitesDir = None,
    limit: Annotated[int | None, opt("Only the first N items of each suite (a quick look).")] = None,
):
    """Answer every item of the suites with the model (cached), score the answers, write the results.

    Example: workbench eval run --suite course_advisor --suite closed_qa --model tiiuae/falcon-7b
    --adapter adapters/advisor --quant 8bit -o results/finetuned"""
    with display.progress_tasks() as new_task:
        result = api.evaluate(suite, model, output, adapter=adapter, name=name, quant=quant, limit=limit,
                              max_new_tokens=max_new_tokens, batch_size=batch_size, suites_dir=suites_dir,
                              progress=new_task, say=warn, **vars(endpoint))
    display.eval_run_summary(result)


@eval_app.command("score")
def eval_score(
    suite: Annotated[str, opt("Suite name or folder.", "--suite")],
    predictions: Annotated[Path, opt('JSONL of {"id", "prediction"} lines.', "--predictions")],
    output: Annotated[Path | None, opt("Write the scores as JSON.", "-o", "--output")] = None,
    partial: Annotated[bool, opt("Score predictions that cover only some items (else an error).")] = False,
    as_json: AsJson = False, suites_dir: SuitesDir = None, strict: Strict = False,
):
    """Score existing predictions on a suite (no model needed).

    Example: workbench eval score --suite closed_qa --predictions answers.jsonl -o scores.json"""
    result, problems, _ = api.score(suite, predictions, output, suites_dir=suites_dir, partial=partial)
    quarantined(problems, sibling(predictions, ".quarantine.jsonl"), strict)
    if as_json:
        return click.echo(json.dumps({k: v for k, v in result.to_dict().items() if k != "items"}, indent=2))
    display.score_summary(result)


@eval_app.command("compare")
@grouped
def eval_compare(
    results: Annotated[list[Path], typer.Argument(help="Results folders of `eval run`; the first is the baseline.")],
    output: Annotated[Path, opt("The HTML report; summary.json and summary.md go beside it (NAME.summary.json "
                                "for another name than report.html).", "-o", "--output")],
    bootstrap: Bootstrap = api.REPORT.bootstrap,
    seed: Annotated[int, opt("Bootstrap seed: the same seed gives the same CIs.")] = api.REPORT.seed,
    max_toxicity_rate: Annotated[float | None, typer.Option(help="Exit 1 when a model's answers are toxic more "
                                                                 "often than this (0-1).", min=0, max=1)
                                 ] = api.REPORT.max_toxicity_rate,
    judge: Annotated[str | None, opt("A model that judges answers pairwise (both orders).")] = None,
    judged_by: Judge = JUDGE,
):
    """Compare models: means with 95% bootstrap CIs, paired differences, plots, answers side by side.

    Example: workbench eval compare results/base results/finetuned -o report.html --max-toxicity-rate 0.01"""
    result = api.compare(results, output, bootstrap=bootstrap, seed=seed, max_toxicity_rate=max_toxicity_rate,
                         judge=judge, **vars(judged_by))
    display.compare_summary(result)
    raise typer.Exit(1 if result.gate_error() else 0)


@eval_app.command("judge-agreement")
@grouped
def eval_judge_agreement(
    judge: Annotated[str, opt("The judge model (hub id or folder; a model name with the openai backend).",
                              "--judge")],
    source: Annotated[Path, opt("An `annotate export` of a comparison dataset, or a pairs file of `data export "
                                "--format dpo`.", "--from")],
    output: Annotated[Path | None, opt("Write the report, every pair with both labels, as JSON.", "-o",
                                       "--output")] = None,
    judged_by: Judge = JUDGE, bootstrap: Bootstrap = api.REPORT.bootstrap,
    seed: Annotated[int, opt("Bootstrap seed.")] = api.REPORT.seed,
    as_json: AsJson = False, strict: Strict = False,
):
    """How often the pairwise judge (both orders) agrees with the people's majority: accuracy and Cohen's kappa with
    95% bootstrap CIs, its position bias, and the pairs where it disagrees.

    Example: workbench eval judge-agreement --judge tiiuae/falcon-7b-instruct --from advisor-ranking.backup.jsonl"""
    from eval_suites import judge_agreement

    if output is not None:
        refuse_overwrite(output, [source], "this report")
    with console.status("Judging the pairs in both orders..."):
        result, problems = api.judge_agreement(judge, source, bootstrap=bootstrap, seed=seed, **vars(judged_by))
    if output is not None:
        atomic_write_json(output, judge_agreement.to_dict(result))
    quarantined(problems, sibling(source, ".quarantine.jsonl"), strict)
    if as_json:
        return click.echo(json.dumps({k: v for k, v in judge_agreement.to_dict(result).items() if k != "rows"},
                                     indent=2))
    display.judge_agreement_summary(result, output)


@suite_app.command("draft")
def eval_suite_draft(
    pages: Annotated[Path, opt("A folder of your pages (Markdown, text, HTML, PDF).", "--pages")],
    output: Annotated[Path, opt("The suite's folder (suite.yaml and items.jsonl are written there).", "-o",
                                "--output")],
    name: Annotated[str | None, opt("The suite's name (default: the folder's).")] = None,
    force: Annotated[bool, opt("Write over a suite already in the folder.")] = False,
):
    """Draft a suite from your pages: questions each page answers (its own sentence is the reference) and questions
    it cannot (the right answer says so); check it before trusting the scores.

    Example: workbench eval suite draft --pages saved-pages/ -o my-suite"""
    display.lines(api.draft_suite(pages, output, name=name, force=force).summary_lines())

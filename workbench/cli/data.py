"""`workbench data ...`: import, validate, export and describe record files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer

from workbench import api, display
from workbench.cli.base import (
    AllowEmpty,
    AsJson,
    Quarantine,
    Strict,
    group,
    opt,
    quarantine_file,
    quarantined,
    shown,
    sibling,
)
from workbench.cli.options import JUDGE, Judge, grouped
from workbench.core.io import refuse_overwrite, validate_files, write_problems
from workbench.core.runs import refuse_empty
from workbench.core.stats import file_stats
from workbench.display import console, err_console

data_app = group("Import, validate and describe record files.")
GROUPS = {"data": data_app}


@data_app.command("import")
def data_import(
    source: Annotated[str, typer.Argument(help="A file, a folder, or a hub id (needs a reachable hub).")],
    output: Annotated[Path, opt("Records JSONL (or .parquet) to write.", "-o", "--output")],
    format: Annotated[str | None, opt("dolly, oasst1, alpaca or jsonl; guessed when left out.")] = None,
    map: Annotated[str | None, opt("Field names: instruction=FIELD,response=FIELD,...", "--map")] = None,
    lang: Annotated[str | None, opt("OASST1 only: keep conversations in this language.")] = None,
    source_label: Annotated[str | None, opt("The records' source label.", "--source")] = None,
    allow_unknown_categories: bool = False, quarantine: Quarantine = None, strict: Strict = False,
    allow_empty: AllowEmpty = False,
):
    """Import Dolly, OASST1, Alpaca or record JSONL into records.

    Example: workbench data import databricks-dolly-15k.jsonl -o dolly.jsonl"""
    where = quarantine_file(quarantine, output, [source])
    result, problems = api.import_data(source, output, format=format, map=map, lang=lang, source_label=source_label,
                                       allow_unknown_categories=allow_unknown_categories)
    console.print(f"Imported {len(result.records):,} records ({result.format}) to {output}")
    for reason, n in sorted(result.skipped.items()):
        console.print(f"  left out {n:,}: {reason}")
    quarantined(problems, where, strict)
    refuse_empty([source], len(result.records) + sum(result.skipped.values()), len(result.records), result.skipped,
                 problems, [where] if problems else [], allow_empty)


@data_app.command("validate")
def data_validate(
    files: Annotated[list[Path], typer.Argument(help="Record files (JSONL or Parquet).")],
    quarantine: Annotated[Path | None, opt("Write every bad line here as JSONL.")] = None,
    max_field_bytes: Annotated[int, opt("Longest text field allowed, in bytes.")] = 1_000_000,
    allow_unknown_categories: bool = False, allow_empty: AllowEmpty = False,
):
    """Check record files line by line; exit 1 when any line is bad or a file is empty (unless --allow-empty).

    Example: workbench data validate seeds.jsonl --quarantine bad.jsonl"""
    if quarantine is not None:
        refuse_overwrite(quarantine, files, "this validation")
    problems, valid = validate_files(files, max_field_bytes=max_field_bytes,
                                     allow_unknown_categories=allow_unknown_categories)
    for problem in problems:
        click.echo(str(problem))
    if quarantine is not None:
        write_problems(quarantine, problems)
    console.print(f"{valid:,} valid record(s), {len(problems):,} problem(s) in {len(files)} file(s)")
    empty = [] if allow_empty else [f for f in files if f.is_file() and f.stat().st_size == 0]
    for path in empty:  # nothing in it is not a valid dataset: an export that failed, a cut download
        click.echo(f"{path}: an empty file, no record in it", err=True)
    raise typer.Exit(1 if problems or empty else 0)


@data_app.command("export")
@grouped
def data_export(
    file: Annotated[Path, typer.Argument(help="Curated records (JSONL).")],
    fmt: Annotated[str, opt("dolly, alpaca, sharegpt, or dpo (preference pairs).", "--format")],
    output: Annotated[Path, opt("The exported file; its card goes beside it.", "-o", "--output")],
    run: Annotated[Path | None, opt("The run folder that made the records: its stage counts and rejection reasons "
                                    "go into the card.")] = None,
    push_to_hub: Annotated[str | None, opt("Also upload to this hub dataset repo (needs a hub).")] = None,
    pairs: Annotated[str, opt("dpo: from a ranking, every ordered pair (all) or the best over the worst "
                              "(best-worst).")] = api.PAIRS.pairs,
    system_prompt: Annotated[bool, opt("dpo: the course-advisor system prompt in every prompt (as finetune's "
                                       "--system-prompt).")] = api.PAIRS.system_prompt,
    tokenizer: Annotated[str | None, opt("dpo: build prompts with this tokenizer's chat template.")] = None,
    judge: Annotated[str | None, opt("dpo: a model that judges the candidates nobody ranked (both orders).")] = None,
    judged_by: Judge = JUDGE,
    strict: Strict = False, allow_empty: AllowEmpty = False,
):
    """Export records as Dolly, Alpaca or ShareGPT with a dataset card (sources, licences, stages), or as DPO
    preference pairs (prompt, chosen, rejected) from rankings, corrections and judge verdicts.

    Example: workbench data export runs/demo/review/records.jsonl --format alpaca -o advisor.json --run runs/demo
    (pairs: workbench data export ranked.jsonl --format dpo -o pairs.jsonl --pairs best-worst)"""
    made = api.export_data(file, fmt, output, run=run, pairs=pairs, system_prompt=system_prompt, tokenizer=tokenizer,
                           judge=judge, judge_backend=judged_by.judge_backend, api_base=judged_by.api_base,
                           api_key=judged_by.api_key, allow_empty=allow_empty)
    if fmt == "dpo":
        return shown(made, strict)
    console.print(f"Exported {made.records:,} records to {output} ({fmt}); dataset card: {made.card}")
    for name in made.non_commercial:
        err_console.print(f"Warning: a non-commercial licence is mixed in ({name}); see the card")
    quarantined(made.problems, where := sibling(output, ".quarantine.jsonl"), strict)
    refuse_empty([file], made.records, made.records, {}, made.problems, [where] if made.problems else [],
                 allow_empty)
    if push_to_hub:
        from workbench.core import export

        console.print(f"Pushed to {export.push_to_hub(push_to_hub, {output.name: output, 'README.md': made.card})}")


@data_app.command("stats")
def data_stats(file: Annotated[Path, typer.Argument(help="A record file (JSONL or Parquet).")],
               tokenizer: Annotated[str | None, opt("Also count tokens with this tokenizer.")] = None,
               as_json: AsJson = False, quarantine: Quarantine = None, strict: Strict = False):
    """Records per category beside Dolly-15k's shares, and length percentiles.

    Example: workbench data stats curated.jsonl --tokenizer runs/demo/tiny-model/model"""
    where = quarantine_file(quarantine, file, [file])
    stats, problems = file_stats(file, tokenizer)
    if as_json:
        click.echo(json.dumps(stats.to_dict(), indent=2))
    for table in [] if as_json else display.stats_tables(stats, str(file)):
        console.print(table)
    quarantined(problems, where, strict)

"""The `workbench` command line: thin commands over the library; WorkbenchError becomes one line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from workbench.display import console, err_console, stats_tables
from workbench.errors import WorkbenchError


class _Group(TyperGroup):
    """Turns the library's typed errors into `Error: ...` (and a hint) with exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WorkbenchError as e:
            click.echo(f"Error: {e.message}", err=True)
            if e.hint:
                click.echo(f"Hint: {e.hint}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Instruct Workbench: build instruction-tuning data and evaluate the models trained on it.")
data_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Import, validate and describe record files.")
models_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Build tiny models and check model loading.")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")

Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 when any line is quarantined.")]
Quarantine = Annotated[Path | None, typer.Option(help="Where bad lines go (default: beside the output).")]


def _report_problems(problems, quarantine: Path, strict: bool) -> None:
    """Shared by commands that read records: write the quarantine file, say where, honour --strict."""
    from workbench.io import write_problems

    if not problems:
        return
    write_problems(quarantine, problems)
    for problem in problems[:5]:
        err_console.print(str(problem), markup=False, highlight=False)
    more = " (first 5 shown)" if len(problems) > 5 else ""
    err_console.print(f"{len(problems)} bad line(s) quarantined to {quarantine}{more}", markup=False)
    if strict:
        raise typer.Exit(1)


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name.removesuffix(path.suffix) + suffix)


@data_app.command("import")
def data_import(
    source: Annotated[str, typer.Argument(help="A file, a folder, or a hub id (needs a reachable hub).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Records JSONL (or .parquet) to write.")],
    format: Annotated[str | None, typer.Option(help="dolly, oasst1, alpaca or jsonl; guessed when left out.")] = None,
    map: Annotated[str | None, typer.Option("--map", help="Field names: instruction=FIELD,response=FIELD,...")] = None,
    lang: Annotated[str | None, typer.Option(help="OASST1 only: keep conversations in this language.")] = None,
    source_label: Annotated[str | None, typer.Option("--source", help="The records' source label.")] = None,
    allow_unknown_categories: bool = False,
    quarantine: Quarantine = None,
    strict: Strict = False,
):
    """Import Dolly, OASST1, Alpaca or record JSONL into records.

    Example: workbench data import databricks-dolly-15k.jsonl -o dolly.jsonl
    """
    from workbench.config import build_config
    from workbench.importers import ImportConfig, import_records, parse_field_map
    from workbench.io import write_records

    config = build_config(ImportConfig, {"format": format, "field_map": parse_field_map(map), "lang": lang,
                                         "source": source_label, "allow_unknown_categories": allow_unknown_categories},
                          where="options")
    problems: list = []
    result = import_records(source, config, problems)
    count = write_records(output, result.records)
    console.print(f"Imported {count:,} records ({result.format}) to {output}")
    for reason, n in sorted(result.skipped.items()):
        console.print(f"  left out {n:,}: {reason}")
    _report_problems(problems, quarantine or _sibling(output, ".quarantine.jsonl"), strict)


@data_app.command("validate")
def data_validate(
    files: Annotated[list[Path], typer.Argument(help="Record files (JSONL or Parquet).")],
    quarantine: Annotated[Path | None, typer.Option(help="Write every bad line here as JSONL.")] = None,
    max_field_bytes: Annotated[int, typer.Option(help="Longest text field allowed, in bytes.")] = 1_000_000,
    allow_unknown_categories: bool = False,
):
    """Check record files line by line; exit 1 when any line is bad.

    Example: workbench data validate seeds.jsonl --quarantine bad.jsonl
    """
    from workbench.io import validate_files, write_problems

    problems, valid = validate_files(files, max_field_bytes=max_field_bytes,
                                     allow_unknown_categories=allow_unknown_categories)
    for problem in problems:
        click.echo(str(problem))
    if quarantine is not None:
        write_problems(quarantine, problems)
    console.print(f"{valid:,} valid record(s), {len(problems):,} problem(s) in {len(files)} file(s)")
    raise typer.Exit(1 if problems else 0)


@data_app.command("stats")
def data_stats(
    file: Annotated[Path, typer.Argument(help="A record file (JSONL or Parquet).")],
    tokenizer: Annotated[str | None, typer.Option(help="Also count tokens with this tokenizer.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    quarantine: Quarantine = None,
    strict: Strict = False,
):
    """Records per category beside Dolly-15k's shares, and length percentiles.

    Example: workbench data stats curated.jsonl --tokenizer runs/demo/tiny-model/model
    """
    from workbench.io import load_records
    from workbench.models import load_tokenizer
    from workbench.stats import compute_stats

    problems: list = []
    stats = compute_stats(load_records(file, problems), load_tokenizer(tokenizer) if tokenizer else None)
    if as_json:
        click.echo(json.dumps(stats.to_dict(), indent=2))
    else:
        for table in stats_tables(stats, str(file)):
            console.print(table)
    _report_problems(problems, quarantine or _sibling(file, ".quarantine.jsonl"), strict)


@models_app.command("tiny")
def models_tiny(
    out: Annotated[Path, typer.Argument(help="Folder to save the model and tokenizer in.")],
    arch: Annotated[str, typer.Option(help="falcon (like falcon-7b) or llama.")] = "falcon",
    layers: int = 2, hidden: int = 128, heads: int = 4,
    vocab: Annotated[int, typer.Option(help="BPE vocabulary size (smaller if the corpus runs out).")] = 2000,
    seed: int = 0,
    corpus: Annotated[list[Path] | None, typer.Option(
        help="Text for the tokenizer (repeat the flag); default: the bundled catalog and seeds.")] = None,
):
    """Build a tiny model of a real architecture with a BPE tokenizer trained on the corpus.

    Example: workbench models tiny tiny-falcon --arch falcon --layers 2 --hidden 128
    """
    from workbench.tiny import TinySpec, build_tiny_model

    clock = time.perf_counter()
    spec = TinySpec(arch=arch, layers=layers, hidden=hidden, heads=heads, vocab=vocab, seed=seed)
    path = build_tiny_model(out, spec, corpus or None)
    made = json.loads((path / "tiny.json").read_text())
    console.print(f"Built a {arch} model with {made['parameters']:,} parameters in {path} "
                  f"({time.perf_counter() - clock:.1f} s)")


@models_app.command("check")
def models_check(
    model: Annotated[str, typer.Argument(help="A hub id or local folder.")],
    quant: Annotated[str, typer.Option(help="none, 8bit or 4bit.")] = "none",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    prompt: Annotated[str | None, typer.Option(help="Also generate from this prompt.")] = None,
):
    """Load a model the way every stage does and report what was really loaded (8-bit verified).

    Example: workbench models check tiiuae/falcon-7b --quant 8bit
    """
    from workbench.models import GenerationParams, get_model

    loaded = get_model(model, quant=quant, dtype=dtype, device=device)
    console.print(f"{model}: {type(loaded.model).__name__}, {loaded.parameters:,} parameters on {loaded.device}, "
                  f"dtype {loaded.model.dtype}, quantization {quant} ({loaded.quantized_layers} layers)")
    if prompt:
        console.print(prompt + loaded.generate([prompt], GenerationParams(max_new_tokens=32))[0], markup=False)


@app.command("demo")
def demo(
    runs_dir: Annotated[Path, typer.Option(help="Where run folders live.")] = Path("runs"),
    name: Annotated[str, typer.Option(help="The run's name.")] = "demo",
    force: Annotated[bool, typer.Option(help="Redo stages that are already done.")] = False,
):
    """Run the loop offline on the bundled catalog and seed tasks (what `make demo` runs).

    Example: workbench demo --runs-dir runs
    """
    from workbench.demo import run_demo

    with console.status("Running the demo stages..."):
        result = run_demo(runs_dir, name, force)
    for outcome in result.outcomes:
        state = "skipped (unchanged)" if outcome.skipped else f"done in {outcome.manifest['seconds']:.1f} s"
        counts = ", ".join(f"{k} {v:,}" for k, v in outcome.manifest["counts"].items())
        console.print(f"[bold]{outcome.stage.name}[/]: {state} — {counts}  ({outcome.stage.dir})")
    for table in stats_tables(result.stats, "Seed tasks"):
        console.print(table)
    console.print(f"Catalog: {len(result.programmes)} programmes, "
                  f"{sum(p['programming_required'] for p in result.programmes)} require programming")
    console.print(f"Run folder: {result.run_dir}")

"""The `workbench` command line: each command parses its options, calls one library entry, and shows the result.
The only module that knows Typer; WorkbenchError becomes one line (and a hint) with exit code 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from annotation import agreement, client, review, server
from eval_suites import judge_agreement, report, runner
from eval_suites.registry import list_suites, load_suite
from pipelines import (
    bootstrap,
    contamination,
    dedup,
    finetune,
    from_docs,
    instances,
    instruction_filter,
    preferences,
    responses,
    screen,
)
from pipelines.dedup_index import drop_index as drop_index_named
from pipelines.resumable import refuse_unappendable
from workbench import display
from workbench.assistant import load_assistant
from workbench.core import export
from workbench.core.backends import BackendConfig, load_backend
from workbench.core.catalog import SEED_TASKS
from workbench.core.config import error_lines, options
from workbench.core.distributed import is_main
from workbench.core.errors import WorkbenchError
from workbench.core.importers import ImportConfig, import_file, parse_field_map
from workbench.core.io import atomic_write_json, check_readable, refuse_overwrite, validate_files, write_problems
from workbench.core.models import GenerationParams, get_model
from workbench.core.next_token import next_tokens
from workbench.core.runs import Outputs, list_runs, refuse_empty, stage_summaries
from workbench.core.stats import file_stats
from workbench.core.teaching import build_and_train
from workbench.core.tiny import TinySpec
from workbench.core.urls import masked
from workbench.display import console, err_console, progress_bar, step_summary
from workbench.doctor import run_checks
from workbench.trace import trace as trace_record


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
        except ValidationError as e:  # an option a config refused where no build_config named it
            for line in error_lines(e, "options"):
                click.echo(f"Error: {line}", err=True)
            raise typer.Exit(1) from None


def _group(help: str) -> typer.Typer:
    return typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False, help=help)


app = _group("Instruct Workbench: build instruction-tuning data and evaluate the models trained on it.")
data_app = _group("Import, validate and describe record files.")
models_app = _group("Build tiny models and check model loading.")
generate_app = _group("Self-Instruct generation: instructions, instances, document questions, filters.")
annotate_app = _group("Human review in Argilla: serve a local server, push, pull the curated set back.")
users_app = _group("Accounts on the Argilla server.")
eval_app = _group("Evaluate models on suites (closed_qa, brainstorming, course_advisor) and compare them.")
runs_app = _group("Run folders: what ran, when, and what it made.")
inspect_app = _group("See inside a model: next-token probabilities.")
for sub, name in ((data_app, "data"), (models_app, "models"), (generate_app, "generate"), (eval_app, "eval"),
                  (runs_app, "runs"), (inspect_app, "inspect"), (annotate_app, "annotate")):
    app.add_typer(sub, name=name)
annotate_app.add_typer(users_app, name="users")


def _opt(help: str, *names: str):
    return typer.Option(*names, help=help)


Strict = Annotated[bool, _opt("Exit 1 when any line is quarantined.", "--strict")]
AllowEmpty = Annotated[bool, _opt("Exit 0 even when records were read and none was kept.", "--allow-empty")]
Port = Annotated[int, typer.Option(help="Port (1-65535).", min=1, max=65535)]
Output = Annotated[Path, _opt("Records JSONL to write (appended to on resume).", "-o", "--output")]
Rejected = Annotated[Path | None, _opt("Rejected candidates with their reasons (default: beside -o).")]
ModelName = Annotated[str, _opt("Hub id or folder (transformers); model name (openai).", "--model")]
BackendName = Annotated[str, _opt("transformers or openai.", "--backend")]
ApiBase = Annotated[list[str] | None, _opt("OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default "
                                           "$OPENAI_BASE_URL); repeat for replicas of the model, which share the "
                                           "requests.")]
ApiKey = Annotated[str | None, _opt("API key (default $OPENAI_API_KEY); never printed.")]
Api = Annotated[str, _opt("openai backend: completions or chat.")]
Concurrency = Annotated[int, _opt("openai backend: requests in flight at once (on each --api-base).")]
Seeds = Annotated[Path | None, _opt("Seed tasks (default: the bundled course-advisor seeds).")]
Force = Annotated[bool, _opt("Start again instead of resuming an existing output.")]
Preset = Annotated[str, _opt("self-instruct, alpaca or none.")]
Rules = Annotated[Path | None, _opt("YAML file of filter rules over the preset (keywords, ...).")]
MaxNewTokens = Annotated[int | None, _opt("Tokens generated per prompt at most.")]
Temperature = Annotated[float | None, _opt("Sampling temperature (0 = greedy).")]
BatchSize = Annotated[int | None, _opt("Prompts per batch (transformers backend).")]
Quarantine = Annotated[Path | None, _opt("Where bad lines go (default: beside the output).")]
AdapterOption = Annotated[str | None, _opt("LoRA adapter folder on top of --model.", "--adapter")]
QuantOption = Annotated[str, _opt("none, 8bit or 4bit.", "--quant")]
AsJson = Annotated[bool, _opt("Print JSON instead of tables.", "--json")]


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name.removesuffix(path.suffix) + suffix)


def _quarantine_file(given: Path | None, beside: Path, inputs: list) -> Path:
    """Where bad lines will go, refused before anything is read or written if it is one of the inputs."""
    path = given or _sibling(beside, ".quarantine.jsonl")
    refuse_overwrite(path, inputs, "this command")
    return path


def _quarantine(problems, quarantine: Path, strict: bool) -> None:
    """Commands that read records without a stage's outputs: write the quarantine file, say where, honour --strict."""
    if problems:
        refuse_overwrite(quarantine, {p.file for p in problems}, "this command")
        write_problems(quarantine, problems)
        display.problems_summary(problems, str(quarantine))
        if strict:
            raise typer.Exit(1)


def _shown(result, strict: bool = False, summary=step_summary):
    """Show a stage's result; with --strict, exit 1 when it quarantined any input line."""
    summary(result)
    if strict and result.problems:
        raise typer.Exit(1)
    return result


def _required(output: Path | None) -> Path:
    if output is None:
        raise typer.BadParameter("-o/--output is required unless --dry-run", param_hint="-o")
    return output


def _backend(model: str, backend: str, api_base: list[str] | None, api_key: str | None, api: str,
             concurrency: int):
    return load_backend(options(BackendConfig, backend=backend, model=model, api_base=api_base, api=api,
                                concurrency=concurrency), api_key, say=_warn)


def _warn(line: str) -> None:
    err_console.print(f"Warning: {line}", markup=False, highlight=False)


@data_app.command("import")
def data_import(
    source: Annotated[str, typer.Argument(help="A file, a folder, or a hub id (needs a reachable hub).")],
    output: Annotated[Path, _opt("Records JSONL (or .parquet) to write.", "-o", "--output")],
    format: Annotated[str | None, _opt("dolly, oasst1, alpaca or jsonl; guessed when left out.")] = None,
    map: Annotated[str | None, _opt("Field names: instruction=FIELD,response=FIELD,...", "--map")] = None,
    lang: Annotated[str | None, _opt("OASST1 only: keep conversations in this language.")] = None,
    source_label: Annotated[str | None, _opt("The records' source label.", "--source")] = None,
    allow_unknown_categories: bool = False, quarantine: Quarantine = None, strict: Strict = False,
    allow_empty: AllowEmpty = False,
):
    """Import Dolly, OASST1, Alpaca or record JSONL into records.

    Example: workbench data import databricks-dolly-15k.jsonl -o dolly.jsonl"""
    config = options(ImportConfig, format=format, field_map=parse_field_map(map), lang=lang, source=source_label,
                     allow_unknown_categories=allow_unknown_categories)
    quarantine = _quarantine_file(quarantine, output, [source])
    result, problems = import_file(source, config, output)
    console.print(f"Imported {len(result.records):,} records ({result.format}) to {output}")
    for reason, n in sorted(result.skipped.items()):
        console.print(f"  left out {n:,}: {reason}")
    _quarantine(problems, quarantine, strict)
    refuse_empty([source], len(result.records) + sum(result.skipped.values()), len(result.records), result.skipped,
                 problems, [quarantine] if problems else [], allow_empty)


@data_app.command("validate")
def data_validate(
    files: Annotated[list[Path], typer.Argument(help="Record files (JSONL or Parquet).")],
    quarantine: Annotated[Path | None, _opt("Write every bad line here as JSONL.")] = None,
    max_field_bytes: Annotated[int, _opt("Longest text field allowed, in bytes.")] = 1_000_000,
    allow_unknown_categories: bool = False,
):
    """Check record files line by line; exit 1 when any line is bad.

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
    raise typer.Exit(1 if problems else 0)


@data_app.command("export")
def data_export(
    file: Annotated[Path, typer.Argument(help="Curated records (JSONL).")],
    fmt: Annotated[str, _opt("dolly, alpaca, sharegpt, or dpo (preference pairs).", "--format")],
    output: Annotated[Path, _opt("The exported file; its card goes beside it.", "-o", "--output")],
    run: Annotated[Path | None, _opt("The run folder that made the records: its stage counts and rejection reasons "
                                     "go into the card.")] = None,
    push_to_hub: Annotated[str | None, _opt("Also upload to this hub dataset repo (needs a hub).")] = None,
    pairs: Annotated[str, _opt("dpo: from a ranking, every ordered pair (all) or the best over the worst "
                               "(best-worst).")] = "all",
    system_prompt: Annotated[bool, _opt("dpo: the course-advisor system prompt in every prompt (as finetune's "
                                        "--system-prompt).")] = False,
    tokenizer: Annotated[str | None, _opt("dpo: build prompts with this tokenizer's chat template.")] = None,
    judge: Annotated[str | None, _opt("dpo: a model that judges the candidates nobody ranked (both orders).")] = None,
    judge_backend: Annotated[str, _opt("dpo: the judge's backend: transformers or openai.")] = "transformers",
    api_base: ApiBase = None, api_key: ApiKey = None,
    strict: Strict = False, allow_empty: AllowEmpty = False,
):
    """Export records as Dolly, Alpaca or ShareGPT with a dataset card (sources, licences, stages), or as DPO
    preference pairs (prompt, chosen, rejected) from rankings, corrections and judge verdicts.

    Example: workbench data export runs/demo/review/records.jsonl --format alpaca -o advisor.json --run runs/demo
    (pairs: workbench data export ranked.jsonl --format dpo -o pairs.jsonl --pairs best-worst)"""
    if fmt != "dpo" and (pairs != "all" or system_prompt or tokenizer or judge):
        raise typer.BadParameter("--pairs, --system-prompt, --tokenizer and --judge make preference pairs: use them "
                                 "with --format dpo", param_hint="--format")
    if fmt == "dpo":
        judged = options(BackendConfig, backend=judge_backend, model=judge, api_base=api_base) if judge else None
        config = options(preferences.PairsConfig, pairs=pairs, system_prompt=system_prompt, tokenizer=tokenizer,
                         judge=judged)
        out = Outputs.beside(output, "pairs", main="pairs.jsonl", dropped=".dropped.jsonl", allow_empty=allow_empty)
        return _shown(preferences.run(file, config, out, api_key), strict, display.pairs_summary)
    made = export.export_file(file, fmt, output, run)
    console.print(f"Exported {made.records:,} records to {output} ({fmt}); dataset card: {made.card}")
    for name in made.non_commercial:
        err_console.print(f"Warning: a non-commercial licence is mixed in ({name}); see the card")
    _quarantine(made.problems, quarantine := _sibling(output, ".quarantine.jsonl"), strict)
    refuse_empty([file], made.records, made.records, {}, made.problems, [quarantine] if made.problems else [],
                 allow_empty)
    if push_to_hub:
        console.print(f"Pushed to {export.push_to_hub(push_to_hub, {output.name: output, 'README.md': made.card})}")


@data_app.command("stats")
def data_stats(file: Annotated[Path, typer.Argument(help="A record file (JSONL or Parquet).")],
               tokenizer: Annotated[str | None, _opt("Also count tokens with this tokenizer.")] = None,
               as_json: AsJson = False, quarantine: Quarantine = None, strict: Strict = False):
    """Records per category beside Dolly-15k's shares, and length percentiles.

    Example: workbench data stats curated.jsonl --tokenizer runs/demo/tiny-model/model"""
    quarantine = _quarantine_file(quarantine, file, [file])
    stats, problems = file_stats(file, tokenizer)
    if as_json:
        click.echo(json.dumps(stats.to_dict(), indent=2))
    for table in [] if as_json else display.stats_tables(stats, str(file)):
        console.print(table)
    _quarantine(problems, quarantine, strict)


@models_app.command("tiny")
def models_tiny(
    out: Annotated[Path, typer.Argument(help="Folder to save the model and tokenizer in.")],
    arch: Annotated[str, _opt("falcon (like falcon-7b) or llama.")] = "falcon",
    layers: int = 2, hidden: int = 128, heads: int = 4, seed: int = 0,
    vocab: Annotated[int, _opt("BPE vocabulary size (smaller if the corpus runs out).")] = 2000,
    corpus: Annotated[list[Path] | None, _opt("Text for the tokenizer (repeat the flag); default: the bundled "
                                              "catalog and seeds.")] = None,
    train_steps: Annotated[int, _opt("Then train it from scratch for this many steps on the corpus (default corpus: "
                                     "the bundled data in the shapes the loop asks for).")] = 0,
):
    """Build a tiny model of a real architecture with a BPE tokenizer trained on the corpus.

    Example: workbench models tiny tiny-falcon --arch falcon --layers 2 --hidden 128 --train-steps 300"""
    spec = TinySpec(arch=arch, layers=layers, hidden=hidden, heads=heads, vocab=vocab, seed=seed)
    with progress_bar("training steps") as step:
        made = build_and_train(out, spec, corpus or None, train_steps, lambda done, total, loss: step(done, total))
    console.print(f"Built a {arch} model with {made['parameters']:,} parameters in {out} ({made['seconds']:.1f} s)")
    if train_steps:
        console.print(f"Trained {train_steps} steps: loss {made['losses'][0]:.2f} -> {made['losses'][-1]:.2f}")


@models_app.command("check")
def models_check(model: Annotated[str, typer.Argument(help="A hub id or local folder.")], quant: QuantOption = "none",
                 dtype: Annotated[str, _opt("auto, float32, bfloat16 or float16.")] = "auto",
                 device: Annotated[str, _opt("auto, cpu or cuda.")] = "auto",
                 prompt: Annotated[str | None, _opt("Also generate from this prompt.")] = None):
    """Load a model the way every stage does and report what was really loaded (8-bit verified).

    Example: workbench models check tiiuae/falcon-7b --quant 8bit"""
    loaded = get_model(model, quant=quant, dtype=dtype, device=device)
    console.print(f"{model}: {type(loaded.model).__name__}, {loaded.parameters:,} parameters on {loaded.device}, "
                  f"dtype {loaded.model.dtype}, quantization {quant} ({loaded.quantized_layers} layers)")
    if prompt:
        console.print(prompt + loaded.generate([prompt], GenerationParams(max_new_tokens=32))[0], markup=False)


RunsDir = Annotated[Path, _opt("Where run folders live.")]
KeepServer = Annotated[bool, _opt("Leave the Argilla server running to browse the review.")]


def _run(recipe, runs_dir: Path, name: str, review: str | None, **settings) -> None:
    from workbench.recipe import run_recipe  # its default recipe looks for detoxify's weights: loads torch

    recipe = recipe.with_review(review) if review is not None else recipe
    with console.status("Running the recipe...") as status:
        result = run_recipe(recipe, runs_dir, name, on_stage=lambda stage: status.update(f"Stage: {stage}"), **settings)
    display.run_summary(result)


@app.command("demo")
def demo_command(
    runs_dir: RunsDir = Path("runs"), name: Annotated[str, _opt("The run's name.")] = "demo",
    force: Annotated[bool, _opt("Redo stages that are already done.")] = False, keep_server: KeepServer = False,
    review: Annotated[str, _opt("auto: three clearly labelled demo reviewers; manual: people review in the local "
                                "Argilla UI (the run stops and resumes).")] = "auto",
):
    """Run the embedded tiny recipe offline on the bundled catalog and seed tasks (what `make demo` runs).

    Example: workbench demo --runs-dir runs"""
    from workbench.recipe import Recipe

    _run(Recipe(), runs_dir, name, review, force=force, keep_server=keep_server)


@app.command("run")
def run_command(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML file (see recipes/).")],
    name: Annotated[str | None, _opt("The run's name (default: the recipe's name).")] = None,
    runs_dir: RunsDir = Path("runs"), keep_server: KeepServer = False,
    from_stage: Annotated[str | None, _opt("Start at this stage (generate, dedup, screen, review, finetune, eval, "
                                           "report); earlier ones must be done.", "--from")] = None,
    until: Annotated[str | None, _opt("Stop after this stage.")] = None,
    force: Annotated[bool, _opt("Redo the selected stages even when unchanged.")] = False,
    dry_run: Annotated[bool, _opt("Say which stages would run and why; run nothing.")] = False,
    review: Annotated[str | None, _opt("auto or manual (overrides the recipe).")] = None,
    allow_empty: Annotated[bool, _opt("Go on when a stage read records and kept none (it stops the run).",
                                      "--allow-empty")] = False,
):
    """Run a recipe: generate, dedup, screen, review, finetune, eval, report; unchanged stages are skipped.

    Example: workbench run recipes/course-advisor-tiny.yaml --name try-1 --from screen --dry-run"""
    from workbench.recipe import load_recipe

    loaded = load_recipe(recipe)
    _run(loaded, runs_dir, name or loaded.name, review, force=force, from_stage=from_stage, until=until,
         dry_run=dry_run, keep_server=keep_server, allow_empty=allow_empty)


@generate_app.command("instructions")
def generate_instructions(
    output: Output, model: ModelName, backend: BackendName = "transformers", api_base: ApiBase = None,
    api_key: ApiKey = None, api: Api = "completions", concurrency: Concurrency = 4, seeds: Seeds = None,
    num: Annotated[int, _opt("Stop after this many accepted instructions.")] = 100,
    rounds: Annotated[int, _opt("... or after this many rounds.")] = 20,
    quota: Annotated[str | None, _opt("Category shares that steer the seeds shown, e.g. "
                                      "brainstorming=0.2,closed_qa=0.3.")] = None,
    preset: Preset = "self-instruct", rules: Rules = None, rejected: Rejected = None,
    max_new_tokens: MaxNewTokens = None, temperature: Temperature = None, batch_size: BatchSize = None,
    force: Force = False, allow_empty: AllowEmpty = False,
):
    """Bootstrap new instructions from the seed tasks (Self-Instruct); resumes after a kill.

    Example: workbench generate instructions --model tiiuae/falcon-7b-instruct --num 500 -o instructions.jsonl"""
    sampling = bootstrap.PAPER_SAMPLING.override(temperature=temperature, max_new_tokens=max_new_tokens,
                                                 batch_size=batch_size)
    config = options(bootstrap.BootstrapConfig, num=num, rounds=rounds, quota=bootstrap.parse_quota(quota),
                     filter=instruction_filter.filter_config(preset, rules), sampling=sampling)
    out = Outputs.beside(output, "instructions", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    out.guard([seeds or SEED_TASKS])  # before the model loads
    with progress_bar("accepted instructions") as step:
        _shown(bootstrap.run(_backend(model, backend, api_base, api_key, api, concurrency), seeds or SEED_TASKS,
                             config, out, force, step))


@generate_app.command("instances")
def generate_instances(
    instructions: Annotated[Path, typer.Argument(help="Instruction records (e.g. from `generate instructions`).")],
    output: Output, model: ModelName, backend: BackendName = "transformers", api_base: ApiBase = None,
    api_key: ApiKey = None, api: Api = "completions", concurrency: Concurrency = 4, seeds: Seeds = None,
    max_instances: Annotated[int, _opt("Instances kept per task at most.")] = 3,
    rejected: Rejected = None, max_new_tokens: MaxNewTokens = None, temperature: Temperature = None,
    batch_size: BatchSize = None, force: Force = False, allow_empty: AllowEmpty = False,
):
    """Generate input/output instances for each instruction (output-first for classification tasks).

    Example: workbench generate instances instructions.jsonl --model tiiuae/falcon-7b-instruct -o instances.jsonl"""
    sampling = instances.InstancesConfig().sampling.override(temperature=temperature, max_new_tokens=max_new_tokens,
                                                             batch_size=batch_size)
    config = options(instances.InstancesConfig, max_instances=max_instances, sampling=sampling)
    out = Outputs.beside(output, "instances", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    out.guard([instructions, seeds or SEED_TASKS])  # before the model loads
    with progress_bar("instructions") as step:
        _shown(instances.run(_backend(model, backend, api_base, api_key, api, concurrency), instructions,
                             seeds or SEED_TASKS, config, out, force, step))


@generate_app.command("responses")
def generate_responses(
    records: Annotated[Path, typer.Argument(help="Instructions to answer (records); their own responses, when "
                                                  "they have one, are candidates too.")],
    output: Output,
    model: Annotated[list[str], _opt("Hub id or folder; repeat for several generators (slots rotate over them).",
                                     "--model")],
    adapter: Annotated[list[str] | None, _opt("A LoRA adapter for the --model at the same place ('none': "
                                              "none); repeat as --model.", "--adapter")] = None,
    n: Annotated[int, _opt("Candidates per instruction (at least 2), the original response counted.", "--n")] = 2,
    keep_original: Annotated[bool, _opt("An instruction's own response is candidate 0.")] = True,
    system_prompt: Annotated[bool, _opt("The course-advisor system prompt before each instruction.")] = False,
    backend: BackendName = "transformers", api_base: ApiBase = None, api_key: ApiKey = None,
    api: Api = "completions", concurrency: Concurrency = 4, max_new_tokens: MaxNewTokens = None,
    temperature: Temperature = None, batch_size: BatchSize = None, rejected: Rejected = None, force: Force = False,
    allow_empty: AllowEmpty = False,
):
    """Write N candidate responses per instruction, to rank in review and to pair for DPO; resumes after a kill.

    Example: workbench generate responses curated.jsonl --model tiiuae/falcon-7b-instruct --n 4 -o candidates.jsonl"""
    adapters = [None if a in ("none", "") else a for a in adapter or []]
    if len(adapters) > len(model):
        raise typer.BadParameter(f"{len(adapters)} --adapter for {len(model)} --model", param_hint="--adapter")
    sampling = responses.ResponsesConfig().sampling.override(temperature=temperature, max_new_tokens=max_new_tokens,
                                                             batch_size=batch_size)
    config = options(responses.ResponsesConfig, n=n, keep_original=keep_original, system_prompt=system_prompt,
                     sampling=sampling)
    out = Outputs.beside(output, "responses", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    out.guard([records])  # before the models load
    generators = [load_backend(options(BackendConfig, backend=backend, model=name, adapter=tuned, api_base=api_base,
                                       api=api, concurrency=concurrency), api_key, say=_warn)
                  for name, tuned in zip(model, adapters + [None] * (len(model) - len(adapters)))]
    with progress_bar("instructions") as step:
        _shown(responses.run(generators, records, config, out, force, step))


@generate_app.command("from-docs")
def generate_from_docs(
    output: Output, model: ModelName, docs: Annotated[Path, _opt("Folder of Markdown, text or HTML documents.")],
    backend: BackendName = "transformers", api_base: ApiBase = None, api_key: ApiKey = None,
    api: Api = "completions", concurrency: Concurrency = 4,
    num: Annotated[int, _opt("Questions per document.")] = 10,
    grounding: Annotated[float, _opt("Share of an answer's content words that must occur in the document.")] = 0.5,
    rejected: Rejected = None, force: Force = False, allow_empty: AllowEmpty = False,
):
    """Ask questions a prospective student would ask of each document, and answer them from it (closed_qa).

    Example: workbench generate from-docs --docs catalog/ --model tiiuae/falcon-7b-instruct -o catalog-qa.jsonl"""
    config = options(from_docs.FromDocsConfig, num=num, grounding=grounding)
    out = Outputs.beside(output, "from-docs", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    with progress_bar("documents") as step:
        _shown(from_docs.run(_backend(model, backend, api_base, api_key, api, concurrency), docs, config, out, force,
                             step))


@generate_app.command("filter")
def generate_filter(
    records: Annotated[Path, typer.Argument(help="Records whose `instruction` is judged, in file order.")],
    output: Annotated[Path, _opt("Kept records (ids unchanged).", "-o", "--output")],
    pool: Annotated[Path | None, _opt("Records whose instructions form the starting pool.")] = None,
    preset: Preset = "self-instruct", rules: Rules = None, rejected: Rejected = None, strict: Strict = False,
    allow_empty: AllowEmpty = False,
):
    """Apply the Self-Instruct filters (and ROUGE-L novelty against a pool) to existing records.

    Example: workbench generate filter candidates.jsonl --pool seeds.jsonl -o kept.jsonl --rejected rejected.jsonl"""
    out = Outputs.beside(output, "filter", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    _shown(instruction_filter.run(records, instruction_filter.filter_config(preset, rules), out, pool), strict)


@app.command("dedup")
def dedup_command(
    records: Annotated[list[Path] | None, typer.Argument(help="Records to deduplicate, as one set (JSONL or "
                                                             "Parquet).")] = None,
    output: Annotated[Path | None, _opt("Kept records.", "-o", "--output")] = None,
    clusters: Annotated[Path | None, _opt("One line per removed record: id, duplicate_of, linked_to, similarity "
                                          "(default: beside -o).")] = None,
    rejected: Rejected = None,
    against: Annotated[list[Path] | None, _opt("Also remove near-duplicates of these records (repeat the flag).")
                       ] = None,
    fields: Annotated[str, _opt("Fields whose text is compared, comma-separated (instruction, context, "
                                "response).")] = "instruction,response",
    threshold: Annotated[float, _opt("Jaccard similarity of word n-grams at or above which records are "
                                     "duplicates.")] = 0.7,
    ngram: int = 3, num_perm: int = 128,
    keep: Annotated[str, _opt("Which record of a cluster stays: first, longest or seed.")] = "first",
    workers: Annotated[int, _opt("Processes that shingle and hash the texts.")] = 1,
    storage: Annotated[str, _opt("memory, or redis: datasketch's LSH index in Redis.")] = "memory",
    redis_url: Annotated[str, _opt("Redis for --storage redis and the named indexes.")] = "redis://127.0.0.1:6379/0",
    index: Annotated[str | None, _opt("A named index in Redis: also remove near-duplicates of the records in it, "
                                      "then add the kept ones (made on first use; runs at once take turns).")] = None,
    against_index: Annotated[list[str] | None, _opt("Also remove near-duplicates of the records in this named "
                                                    "index, without adding to it (repeat the flag).")] = None,
    drop_index: Annotated[str | None, _opt("Remove this named index from Redis (no records are read).")] = None,
    dry_run: Annotated[bool, _opt("Only report what --thresholds would remove.")] = False,
    thresholds: Annotated[str, _opt("With --dry-run.")] = "0.5,0.6,0.7,0.8,0.9", strict: Strict = False,
    allow_empty: AllowEmpty = False,
):
    """Remove near-duplicates (MinHash LSH candidates, verified by exact Jaccard), streaming over --workers.

    Example: workbench dedup candidates.jsonl -o unique.jsonl --clusters clusters.jsonl --against seeds.jsonl
    (a shared index: workbench dedup batch2.jsonl -o unique2.jsonl --index course-advisor)"""
    config = options(dedup.DedupConfig, fields=tuple(f.strip() for f in fields.split(",")), keep=keep,
                     threshold=threshold, ngram=ngram, num_perm=num_perm, storage=storage, redis_url=redis_url,
                     workers=workers)
    if drop_index:
        if records:
            raise typer.BadParameter("--drop-index reads no records: give it alone", param_hint="--drop-index")
        held = drop_index_named(drop_index, config)
        return console.print(f"Dropped dedup index {drop_index!r} ({held:,} records) from {masked(redis_url)}")
    if not records:
        raise typer.BadParameter("give the record files to deduplicate (or --drop-index NAME)", param_hint="RECORDS")
    if dry_run and (index or against_index):
        raise typer.BadParameter("--dry-run reads no index: leave out --index and --against-index",
                                 param_hint="--dry-run")
    if dry_run:
        rows, problems = dedup.preview(records, config, dedup.parse_thresholds(thresholds), against or [])
        return display.dedup_dry_run_table(rows, problems)
    out = Outputs.beside(_required(output), "dedup", files={"dropped.jsonl": rejected, "clusters.jsonl": clusters},
                         allow_empty=allow_empty)
    _shown(dedup.run(records, config, out, against or [], index=index, against_indexes=against_index or [],
                     say=_warn), strict)


@app.command("contamination")
def contamination_command(
    train: Annotated[Path, typer.Argument(help="Training records (instruction + response are compared).")],
    eval: Annotated[list[Path], _opt("Eval items JSONL or suite folder (repeat the flag).", "--eval")],
    report: Annotated[Path | None, _opt("The findings as JSON (default: TRAIN.contamination.json).")] = None,
    fail_on_contamination: Annotated[bool, _opt("Exit 1 when any item is contaminated.")] = False,
    threshold: float = 0.7,
):
    """List eval items that are near-duplicates of training data or share a 13-gram with it.

    Example: workbench contamination curated.jsonl --eval closed_qa_items.jsonl --fail-on-contamination"""
    out = Outputs.beside(report or _sibling(train, ".contamination.json"), "contamination", main="report.json")
    result = contamination.run(train, eval, options(contamination.ContaminationConfig, threshold=threshold), out)
    display.contamination_summary(result, train)
    raise typer.Exit(1 if result.findings and fail_on_contamination else 0)


@app.command("screen")
def screen_command(
    records: Annotated[Path, typer.Argument(help="Records to screen.")],
    output: Annotated[Path | None, _opt("pass and review records.", "-o", "--output")] = None,
    rejected: Rejected = None,
    scorer: Annotated[str, _opt("detoxify, or profanity-check (offline, the `profanity` extra).")] = "detoxify",
    model: Annotated[str, _opt("detoxify model: original, unbiased or multilingual.")] = "original",
    checkpoint: Annotated[str | None, _opt("Local detoxify checkpoint.")] = None,
    hf_config: Annotated[str | None, _opt("Folder with the checkpoint's config and tokenizer.")] = None,
    pass_below: float = 0.1, reject_at: float = 0.8,
    label_threshold: Annotated[list[str] | None, _opt("LABEL=PASS:REJECT (repeat the flag).")] = None,
    pii: Annotated[bool, _opt("Send records with personal data to review.")] = True,
    int8: Annotated[bool, _opt("Dynamic int8 on the CPU (score change reported).")] = False,
    dry_run: Annotated[bool, _opt("Only count the routes and show the highest scores.")] = False,
    strict: Strict = False, allow_empty: AllowEmpty = False,
):
    """Score toxicity per field and route records to pass, review or reject (fails closed).

    Example: workbench screen unique.jsonl -o screened.jsonl --scorer profanity-check"""
    config = options(screen.ScreenConfig, scorer=scorer, model=model, checkpoint=checkpoint, hf_config=hf_config,
                     pii=pii, int8=int8, pass_below=pass_below, reject_at=reject_at,
                     label_thresholds=screen.parse_label_thresholds(label_threshold))
    if dry_run:
        return display.screen_preview(*screen.preview(records, config), config.scorer)
    out = Outputs.beside(_required(output), "screen", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    display.screen_summary(_shown(screen.run(records, config, out), strict))


DataDir = Annotated[Path | None, _opt("The local server's folder (default ~/.workbench/argilla).")]
ArgillaUrl = Annotated[str | None, _opt("Argilla server (default $ARGILLA_API_URL, else the local server's "
                                        "credentials.json).", "--api-url")]
ArgillaKey = Annotated[str | None, _opt("API key (default $ARGILLA_API_KEY); never printed.", "--api-key")]
Dataset = Annotated[str, _opt("Argilla dataset name.", "--dataset")]
Workspace = Annotated[str, _opt("Argilla workspace.")]


@annotate_app.command("serve")
def annotate_serve(port: Port = 6900, data_dir: DataDir = None,
                   host: Annotated[str, _opt("0.0.0.0 lets others on the network reach it.")] = "127.0.0.1"):
    """Start a local Argilla server (SQLite, a Redis, no Elasticsearch) in the background.

    Example: workbench annotate serve --port 6900"""
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"Warning: listening on {host}: anyone who can reach this machine can reach the server "
                          "(annotators log in with their own passwords).", markup=False)
    with console.status("Starting argilla-server..."):
        served = server.serve(data_dir, host=host, port=port)
    display.served_summary(served, data_dir or server.default_data_dir())


@annotate_app.command("stop")
def annotate_stop(data_dir: DataDir = None):
    """Stop the local Argilla server (and the Redis it started).

    Example: workbench annotate stop --data-dir ~/.workbench/argilla"""
    where = data_dir or server.default_data_dir()
    console.print(f"Stopped the server of {where}" if server.stop(data_dir) else f"No server running for {where}")


@annotate_app.command("setup")
def annotate_setup(venv: Annotated[Path | None, _opt("Where to build it.")] = None):
    """Build argilla-server's own environment (for a pip-installed workbench; `make setup` does it in a checkout).

    Example: workbench annotate setup"""
    with console.status("Installing argilla-server into its own environment..."):
        path = server.setup(venv)
    console.print(f"argilla-server is installed in {path}")


@users_app.command("add")
def annotate_users_add(username: Annotated[str, typer.Argument(help="Login name.")],
                       role: Annotated[str, _opt("annotator, admin or owner.")] = "annotator",
                       workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
                       data_dir: DataDir = None):
    """Create an account in a workspace and print its password once.

    Example: workbench annotate users add alice --role annotator"""
    argilla = client.connect(api_url, api_key, data_dir)
    password = client.add_user(argilla, username, role, workspace)
    console.print(f"Created {role} {username!r} in workspace {workspace!r} on {client.api_url_of(argilla)}")
    console.print(f"Password (shown once): {password}", markup=False)


@annotate_app.command("push")
def annotate_push(
    records: Annotated[Path, typer.Argument(help="Records to review (JSONL).")], dataset: Dataset,
    workspace: Workspace = "workbench",
    min_submitted: Annotated[int, _opt("Answers a record needs (submitted, or the Discard button).")] = 1,
    batch_size: int = 100,
    compare: Annotated[bool, _opt("The records are candidates (`generate responses`): one record per group with "
                                  "its K responses and a ranking question.")] = False,
    api_url: ArgillaUrl = None, api_key: ArgillaKey = None, data_dir: DataDir = None, strict: Strict = False,
):
    """Push records to an Argilla dataset (created if needed; pushing again updates, never duplicates).

    Example: workbench annotate push screened.jsonl --dataset advisor-round-1
    (candidates to rank: workbench annotate push candidates.jsonl --dataset advisor-ranking --compare)"""
    check_readable(records)  # a missing file is named before the server is asked
    argilla = client.connect(api_url, api_key, data_dir)
    with progress_bar(f"Pushing to {dataset}") as update:
        result, problems = review.push_file(records, dataset, argilla, workspace=workspace,
                                            min_submitted=min_submitted, batch_size=batch_size, compare=compare,
                                            progress=update)
    display.push_summary(result)
    _quarantine(problems, _sibling(records, ".quarantine.jsonl"), strict)


@annotate_app.command("pull")
def annotate_pull(
    dataset: Dataset, output: Annotated[Path, _opt("Curated records (JSONL).", "-o", "--output")],
    disputed: Annotated[Path | None, _opt("Records the policy cannot decide (default: beside -o).")] = None,
    policy: Annotated[str, _opt("majority, unanimous or any-discard.")] = "majority",
    since_last: Annotated[bool, _opt("Only records completed since the previous pull.")] = False,
    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
    data_dir: DataDir = None,
):
    """Pull the reviewed records: the answers resolved by the policy, corrections applied.

    Example: workbench annotate pull --dataset advisor-round-1 -o curated.jsonl --policy majority"""
    out = Outputs.beside(output, "review", dropped=".discarded.jsonl", files={"disputed.jsonl": disputed})
    display.pull_summary(review.pull(client.connect(api_url, api_key, data_dir), dataset, out, policy=policy,
                                     workspace=workspace, since_last=since_last, state_dir=data_dir))


@annotate_app.command("export")
def annotate_export(dataset: Dataset, output: Annotated[Path, _opt("JSONL backup.", "-o", "--output")],
                    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
                    data_dir: DataDir = None):
    """Every record with all raw responses (user, status, values, times): a backup that needs no server.

    Example: workbench annotate export --dataset advisor-round-1 -o advisor-round-1.backup.jsonl"""
    count = review.export(client.connect(api_url, api_key, data_dir), dataset, output, workspace)
    console.print(f"Exported {count:,} records of {workspace}/{dataset} to {output}")


@annotate_app.command("agreement")
def annotate_agreement(
    dataset: Annotated[str | None, _opt("Argilla dataset name.", "--dataset")] = None,
    export_file: Annotated[Path | None, _opt("An `annotate export` file instead of a server.", "--from")] = None,
    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
    data_dir: DataDir = None, as_json: AsJson = False,
):
    """Agreement per question (percent, Cohen's kappa per pair, Krippendorff's alpha) and per-annotator counts.

    Example: workbench annotate agreement --dataset advisor-round-1"""
    if (dataset is None) == (export_file is None):
        raise typer.BadParameter("give --dataset (a server) or --from (an export file)", param_hint="--dataset")
    if export_file:
        rows, problems = agreement.read_export(export_file)
        _quarantine(problems, _sibling(export_file, ".quarantine.jsonl"), False)
    else:
        rows = agreement.server_rows(client.connect(api_url, api_key, data_dir), dataset, workspace)
    result = agreement.agreement(rows)
    if as_json:
        return console.print_json(json.dumps(agreement.to_dict(result)))
    for table in display.agreement_tables(result, dataset or str(export_file)):
        console.print(table)


@app.command("finetune")
def finetune_command(
    base: Annotated[str, _opt("Base model: hub id or folder.", "--base")],
    data: Annotated[Path, _opt("Curated records (sft), or preference pairs with prompt, chosen, rejected (dpo); "
                               "JSONL or Parquet.", "--data")],
    output: Annotated[Path | None, _opt("Adapter folder.", "-o", "--output")] = None,
    method: Annotated[str, _opt("sft (records) or dpo (preference pairs, trl's DPOTrainer).")] = "sft",
    ref_adapter: Annotated[Path | None, _opt("dpo: an SFT adapter to start from and stay close to (default: the "
                                             "base).")] = None,
    beta: Annotated[float, _opt("dpo: how far from the reference the model may move (trl's beta).")] = 0.1,
    quant: Annotated[str, _opt("8bit, 4bit, none; default 8bit on CUDA, none on the CPU.")] = "auto",
    epochs: float = 3.0, lr: float = 2e-4, rank: int = 16, alpha: int = 32,
    dropout: Annotated[float, _opt("LoRA dropout (0: the same update in any number of processes).")] = 0.05,
    max_length: Annotated[int, _opt("Longer examples are dropped and reported.")] = 1024,
    packing: Annotated[bool, _opt("Several examples per row, kept apart (no padding).")] = True,
    batch_size: int = 8, grad_accum: int = 1, grad_checkpointing: bool = True, save_steps: int = 200,
    kbit_fp32: Annotated[bool, _opt("8/4-bit: the parameters that are not quantized in fp32 (peft's default; "
                                    "more memory).")] = False,
    eval_split: float = 0.05, max_steps: int = -1, seed: int = 42,
    system_prompt: Annotated[bool, _opt("The course-advisor system prompt in every example.")] = False,
    eval_suite: Annotated[str | None, _opt("An eval suite run at every checkpoint (its metrics with CIs in the "
                                           "manifest and beside the loss in loss.png).")] = None,
    eval_every: Annotated[int | None, _opt("Steps between evaluated checkpoints (default: --save-steps).")] = None,
    eval_limit: Annotated[int | None, _opt("Evaluate on the suite's first N items only.")] = None,
    keep_best: Annotated[str | None, _opt("A suite metric: the checkpoint best by it becomes the adapter.")] = None,
    budget_gib: Annotated[float | None, _opt("Memory to fit (default: the GPU's): the rows of a step go through "
                                             "in passes that fit; refused if one row cannot.")] = None,
    resume: Annotated[bool, _opt("Continue from the last checkpoint in -o.")] = False,
    processes: Annotated[int, typer.Option(help="Train in N processes (one per GPU; gloo on the CPU) through "
                                           "accelerate launch; the effective batch is N times larger.", min=1)] = 1,
    accelerate_config: Annotated[Path | None, _opt("Launch through accelerate with this config file (FSDP, "
                                                   "DeepSpeed, several machines; its process count unless "
                                                   "--processes).")] = None,
    dry_run: Annotated[bool, _opt("Show one tokenized example and check the data; no training.")] = False,
    strict: Strict = False,
):
    """Train a LoRA adapter on curated records (8-bit base on CUDA, loss on responses only, packing), or by DPO on
    preference pairs.

    Example: workbench finetune --base tiiuae/falcon-7b --data curated.jsonl -o adapters/advisor
    (DPO: workbench finetune --method dpo --base tiiuae/falcon-7b --data pairs.jsonl --ref-adapter adapters/advisor
    -o adapters/advisor-dpo)"""
    config = options(finetune.FinetuneConfig, method=method, beta=beta, quant=quant, epochs=epochs, lr=lr, rank=rank,
                     alpha=alpha, dropout=dropout, max_length=max_length, packing=packing, batch_size=batch_size,
                     grad_accum=grad_accum, grad_checkpointing=grad_checkpointing, kbit_fp32=kbit_fp32,
                     save_steps=save_steps, eval_split=eval_split, max_steps=max_steps, seed=seed,
                     system_prompt=system_prompt, eval_suite=eval_suite, eval_every=eval_every,
                     eval_limit=eval_limit, keep_best=keep_best)
    if dry_run and method == "dpo":
        dry, problems = finetune.preview_pairs(base, data, config)
        display.dpo_dry_run_report(dry, config)
        return _quarantine(problems, _sibling(data, ".quarantine.jsonl"), strict)
    if dry_run:
        dry, problems = finetune.preview(base, data, config)
        display.dry_run_report(dry, config)
        return _quarantine(problems, _sibling(data, ".quarantine.jsonl"), strict)
    out = Outputs.beside(_required(output), "finetune", main="adapter")
    if not is_main():  # under `accelerate launch -m workbench finetune`: this process trains its share
        finetune.run(base, data, config, out, resume=resume, budget_gib=budget_gib,
                     ref_adapter=str(ref_adapter) if ref_adapter else None)
        return
    with progress_bar("Finetuning") as update:
        result = finetune.run(base, data, config, out, resume=resume, budget_gib=budget_gib,
                              ref_adapter=str(ref_adapter) if ref_adapter else None, processes=processes,
                              accelerate_config=accelerate_config, progress=update,
                              say=lambda line: console.print(line, markup=False, highlight=False))
    _shown(result, strict, display.finetune_summary)


@app.command("merge")
def merge_command(adapter: Annotated[Path, typer.Argument(help="Adapter folder (from `workbench finetune`).")],
                  output: Annotated[Path, _opt("Merged model folder.", "-o", "--output")],
                  dtype: Annotated[str, _opt("bfloat16, float16 or float32 (never 8-bit).")] = "bfloat16",
                  base: Annotated[str | None, _opt("Base model (default: the one the adapter names).")] = None):
    """Merge an adapter into its base reloaded in 16-bit; checks the merged logits against base + adapter.

    Example: workbench merge adapters/advisor -o models/advisor-merged"""
    with console.status("Merging..."):
        made = finetune.merge(adapter, output, dtype, base)
    console.print(f"Merged {adapter} into {made['base_model']} ({made['dtype']}) -> {output}; logits agree "
                  f"within {made['max_logit_difference']:.2g} on {made['prompts']} prompts")


SuitesDir = Annotated[list[Path] | None, _opt("A folder of your own suites, searched before the bundled ones "
                                              "(repeat the flag).", "--suites-dir")]


@eval_app.command("list")
def eval_list(suites_dir: SuitesDir = None):
    """The eval suites that can be named with --suite.

    Example: workbench eval list --suites-dir my-suites"""
    console.print(display.suites_table([load_suite(name, suites_dir) for name in list_suites(suites_dir)]))


@eval_app.command("run")
def eval_run(
    suite: Annotated[list[str], _opt("Suite name or folder (repeat the flag).", "--suite")], model: ModelName,
    output: Annotated[Path, _opt("Results folder (one subfolder per suite).", "-o", "--output")],
    adapter: AdapterOption = None,
    name: Annotated[str | None, _opt("Label in reports (default: the adapter's or model's name).")] = None,
    backend: BackendName = "transformers", api_base: ApiBase = None, api_key: ApiKey = None, api: Api = "completions",
    concurrency: Concurrency = 4, quant: Annotated[str, _opt("none, 8bit or 4bit (transformers).")] = "none",
    max_new_tokens: MaxNewTokens = None, batch_size: BatchSize = None, suites_dir: SuitesDir = None,
    limit: Annotated[int | None, _opt("Only the first N items of each suite (a quick look).")] = None,
):
    """Answer every item of the suites with the model (cached), score the answers, write the results.

    Example: workbench eval run --suite course_advisor --suite closed_qa --model tiiuae/falcon-7b
    --adapter adapters/advisor --quant 8bit -o results/finetuned"""
    config = options(BackendConfig, backend=backend, model=model, adapter=adapter, quant=quant, api_base=api_base,
                     api=api, concurrency=concurrency)
    settings = runner.EvalConfig(suites=tuple(suite), limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens)
    with display.progress_tasks() as new_task:
        result = runner.run(config, settings, Outputs.beside(output, "eval", main="results"), name=name,
                            suites_dirs=suites_dir, api_key=api_key, progress=new_task, say=_warn)
    display.eval_run_summary(result)


@eval_app.command("score")
def eval_score(
    suite: Annotated[str, _opt("Suite name or folder.", "--suite")],
    predictions: Annotated[Path, _opt('JSONL of {"id", "prediction"} lines.', "--predictions")],
    output: Annotated[Path | None, _opt("Write the scores as JSON.", "-o", "--output")] = None,
    partial: Annotated[bool, _opt("Score predictions that cover only some items (else an error).")] = False,
    as_json: AsJson = False, suites_dir: SuitesDir = None, strict: Strict = False,
):
    """Score existing predictions on a suite (no model needed).

    Example: workbench eval score --suite closed_qa --predictions answers.jsonl -o scores.json"""
    result, problems, loaded = runner.score_file(suite, predictions, output, suites_dir, partial)
    _quarantine(problems, _sibling(predictions, ".quarantine.jsonl"), strict)
    if as_json:
        return click.echo(json.dumps({k: v for k, v in result.items() if k != "items"}, indent=2))
    display.score_summary(result, loaded, predictions)


@eval_app.command("compare")
def eval_compare(
    results: Annotated[list[Path], typer.Argument(help="Results folders of `eval run`; the first is the baseline.")],
    output: Annotated[Path, _opt("The HTML report (summary.json goes beside it).", "-o", "--output")],
    bootstrap: Annotated[int, _opt("Bootstrap resamples.")] = 1000,
    seed: Annotated[int, _opt("Bootstrap seed: the same seed gives the same CIs.")] = 0,
    max_toxicity_rate: Annotated[float | None, _opt("Exit 1 when a model's answers are toxic more often than this "
                                                    "(0-1).")] = None,
    judge: Annotated[str | None, _opt("A model that judges answers pairwise (both orders).")] = None,
    judge_backend: Annotated[str, _opt("The judge's backend: transformers or openai.")] = "transformers",
    api_base: ApiBase = None, api_key: ApiKey = None,
):
    """Compare models: means with 95% bootstrap CIs, paired differences, plots, answers side by side.

    Example: workbench eval compare results/base results/finetuned -o report.html --max-toxicity-rate 0.01"""
    config = options(report.ReportConfig, bootstrap=bootstrap, seed=seed, max_toxicity_rate=max_toxicity_rate)
    judged = options(BackendConfig, backend=judge_backend, model=judge, api_base=api_base) if judge else None
    out = Outputs.beside(output, "report", main="report.html", files={
        "summary.json": output.with_name("summary.json"), "summary.md": output.with_name("summary.md")})
    result = report.run(results, config, out, judged, api_key)
    display.compare_summary(result)
    raise typer.Exit(1 if result.comparison.toxicity_violations else 0)


@eval_app.command("judge-agreement")
def eval_judge_agreement(
    judge: Annotated[str, _opt("The judge model (hub id or folder; a model name with the openai backend).",
                               "--judge")],
    source: Annotated[Path, _opt("An `annotate export` of a comparison dataset, or a pairs file of `data export "
                                 "--format dpo`.", "--from")],
    output: Annotated[Path | None, _opt("Write the report, every pair with both labels, as JSON.", "-o",
                                        "--output")] = None,
    judge_backend: Annotated[str, _opt("The judge's backend: transformers or openai.")] = "transformers",
    api_base: ApiBase = None, api_key: ApiKey = None,
    bootstrap: Annotated[int, _opt("Bootstrap resamples.")] = 1000,
    seed: Annotated[int, _opt("Bootstrap seed.")] = 0,
    as_json: AsJson = False, strict: Strict = False,
):
    """How often the pairwise judge (both orders) agrees with the people's majority: accuracy and Cohen's kappa with
    95% bootstrap CIs, its position bias, and the pairs where it disagrees.

    Example: workbench eval judge-agreement --judge tiiuae/falcon-7b-instruct --from advisor-ranking.backup.jsonl"""
    if output is not None:
        refuse_overwrite(output, [source], "this report")
    read, problems = judge_agreement.read_pairs(source)
    config = options(BackendConfig, backend=judge_backend, model=judge, api_base=api_base)
    with console.status(f"Judging {len(read.pairs):,} pairs in both orders..."):
        result = judge_agreement.judge_agreement(config, read, resamples=bootstrap, seed=seed, api_key=api_key)
    if output is not None:
        atomic_write_json(output, judge_agreement.to_dict(result))
    _quarantine(problems, _sibling(source, ".quarantine.jsonl"), strict)
    if as_json:
        return click.echo(json.dumps({k: v for k, v in judge_agreement.to_dict(result).items() if k != "rows"},
                                     indent=2))
    display.judge_agreement_summary(result, output)


@inspect_app.command("next-token")
def inspect_next_token(
    prompt: Annotated[str, typer.Argument(help="The text the model continues.")], model: ModelName,
    adapter: AdapterOption = None, top_k: Annotated[int, _opt("How many of the most likely tokens to show.")] = 10,
    steps: Annotated[int, _opt("Append the most likely token and show the next step, N times.")] = 1,
    compare: Annotated[str | None, _opt("A second model, side by side (it sees the same text).")] = None,
    compare_adapter: Annotated[str | None, _opt("LoRA adapter for --compare.")] = None,
):
    """The next-token distribution (token, probability), step by step, for one model or two side by side.

    Example: workbench inspect next-token --model tiiuae/falcon-7b "Addressing climate change requires" --steps 3
    --compare tiiuae/falcon-7b-instruct"""
    pairs = [(model, adapter)] + ([(compare, compare_adapter)] if compare else [])
    found = next_tokens([get_model(name, adapter=extra) for name, extra in pairs], prompt, top_k, steps)
    for table in display.next_token_tables(found, [Path(extra or name).name for name, extra in pairs]):
        console.print(table)


Catalog = Annotated[Path | None, _opt("A catalog folder (*.md programme pages): the best-matching page is given as "
                                      "context (BM25), so answers are grounded.")]
SystemPrompt = Annotated[bool, _opt("The course-advisor system prompt.")]
AnswerTokens = Annotated[int, _opt("Tokens generated at most per answer.")]


@app.command("ask")
def ask(question: Annotated[str, typer.Argument(help="A prospective student's question.")], model: ModelName,
        adapter: AdapterOption = None, catalog: Catalog = None, system_prompt: SystemPrompt = True,
        quant: QuantOption = "none", max_new_tokens: AnswerTokens = 128):
    """Answer one question as the course-advisor assistant, streaming the answer.

    Example: workbench ask --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog
    "Do I have to know programming to apply for the business information systems course?\""""
    assistant = load_assistant(model, adapter, catalog, quant, system_prompt)
    display.answer(assistant, question, None, max_new_tokens)


@app.command("chat")
def chat(model: ModelName, adapter: AdapterOption = None, catalog: Catalog = None, system_prompt: SystemPrompt = True,
         quant: QuantOption = "none", max_new_tokens: AnswerTokens = 128):
    """Talk to the course-advisor assistant: one question per line; `exit` or Ctrl-D ends.

    Example: workbench chat --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog"""
    assistant, page = load_assistant(model, adapter, catalog, quant, system_prompt), None
    for question in display.questions():
        page = display.answer(assistant, question, page, max_new_tokens, prefix="[bold]advisor>[/] ")


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
    display.lines(display.stage_lines(folder.name, stages))


@app.command("doctor")
def doctor_command(as_json: AsJson = False):
    """Check Python, torch, CUDA, real 8-bit loading, the Argilla server environment, Redis, the hub and disk.

    Example: workbench doctor"""
    checks = run_checks()
    click.echo(json.dumps([c.to_dict() for c in checks], indent=2)) if as_json else \
        console.print(display.doctor_table(checks))
    raise typer.Exit(1 if any(c.status == "fail" for c in checks) else 0)


@app.command("serve")
def serve_command(
    model: ModelName, adapter: AdapterOption = None, catalog: Catalog = None, quant: QuantOption = "none",
    name: Annotated[str | None, _opt("The model name clients ask for (default: the adapter's or model's folder "
                                     "name).")] = None,
    host: Annotated[str, _opt("Address to listen on; loopback by default.")] = "127.0.0.1",
    port: Port = 8000,
    max_body: Annotated[int, _opt("Largest request body in bytes; larger ones get HTTP 413.")] = 1_000_000,
    max_waiting: Annotated[int, _opt("Requests answered or queued at once; more get HTTP 429.")] = 4,
):
    """Serve the assistant on an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions).

    Example: workbench serve --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog"""
    from workbench.serve import Limits, run_server

    limits = options(Limits, max_body=max_body, max_waiting=max_waiting)
    label = name or Path(adapter or model).name
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"Warning: listening on {host}: anyone who can reach it can use the model (no key)")
    err_console.print(f"Serving {label!r} at http://{host}:{port}/v1 (OPENAI_BASE_URL); Ctrl-C stops")
    run_server(load_assistant(model, adapter, catalog, quant), label, host, port, limits)


@app.command("trace")
def trace_command(record_id: Annotated[str, typer.Argument(help="A record id (or a unique prefix of one).")],
                  run: Annotated[Path, _opt("The run folder.")] = Path("runs/demo"), as_json: AsJson = False):
    """A record's whole life in a run: origin, every filter verdict, dedup, screen, review, adapters, contamination.

    Example: workbench trace eb2ac551 --run runs/demo"""
    found = trace_record(run, record_id)
    if as_json:
        return click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    display.lines(display.trace_lines(found))


if __name__ == "__main__":
    app()

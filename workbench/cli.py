"""The `workbench` command line: thin commands over the library; WorkbenchError becomes one line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from workbench.display import console, err_console, generation_summary, progress_bar, stats_tables
from workbench.core.errors import WorkbenchError


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
generate_app = typer.Typer(cls=_Group, no_args_is_help=True,
                           help="Self-Instruct generation: instructions, instances, document questions, filters.")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
annotate_app = typer.Typer(cls=_Group, no_args_is_help=True,
                           help="Human review in Argilla: serve a local server, push, pull the curated set back.")
users_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Accounts on the Argilla server.")
eval_app = typer.Typer(cls=_Group, no_args_is_help=True,
                       help="Evaluate models on suites (closed_qa, brainstorming, course_advisor) and compare them.")
app.add_typer(generate_app, name="generate")
app.add_typer(eval_app, name="eval")
runs_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Run folders: what ran, when, and what it made.")
app.add_typer(runs_app, name="runs")
inspect_app = typer.Typer(cls=_Group, no_args_is_help=True, help="See inside a model: next-token probabilities.")
app.add_typer(inspect_app, name="inspect")
app.add_typer(annotate_app, name="annotate")
annotate_app.add_typer(users_app, name="users")

Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 when any line is quarantined.")]
Output = Annotated[Path, typer.Option("-o", "--output", help="Records JSONL to write (appended to on resume).")]
Rejected = Annotated[Path | None, typer.Option(help="Rejected candidates with their reasons (default: beside -o).")]
ModelName = Annotated[str, typer.Option("--model", help="Hub id or folder (transformers); model name (openai).")]
BackendName = Annotated[str, typer.Option("--backend", help="transformers or openai.")]
ApiBase = Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
                                             "(default $OPENAI_BASE_URL).")]
ApiKey = Annotated[str | None, typer.Option(help="API key (default $OPENAI_API_KEY); never printed.")]
Api = Annotated[str, typer.Option(help="openai backend: completions or chat.")]
Concurrency = Annotated[int, typer.Option(help="openai backend: requests in flight at once.")]
Seeds = Annotated[Path | None, typer.Option(help="Seed tasks (default: the bundled course-advisor seeds).")]
Force = Annotated[bool, typer.Option(help="Start again instead of resuming an existing output.")]
Preset = Annotated[str, typer.Option(help="self-instruct, alpaca or none.")]
Rules = Annotated[Path | None, typer.Option(help="YAML file of filter rules over the preset (keywords, ...).")]
MaxNewTokens = Annotated[int | None, typer.Option(help="Tokens generated per prompt at most.")]
Temperature = Annotated[float | None, typer.Option(help="Sampling temperature (0 = greedy).")]
BatchSize = Annotated[int | None, typer.Option(help="Prompts per batch (transformers backend).")]
Quarantine = Annotated[Path | None, typer.Option(help="Where bad lines go (default: beside the output).")]
AdapterOption = Annotated[str | None, typer.Option("--adapter", help="LoRA adapter folder on top of --model.")]
QuantOption = Annotated[str, typer.Option("--quant", help="none, 8bit or 4bit.")]


def _report_problems(problems, quarantine: Path, strict: bool) -> None:
    """Shared by commands that read records: write the quarantine file, say where, honour --strict."""
    from workbench.core.io import write_problems

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


def _backend(model: str, backend: str, api_base: str | None, api_key: str | None, api: str, concurrency: int):
    from workbench.core.backends import BackendConfig, load_backend
    from workbench.core.config import build_config

    config = build_config(BackendConfig, {"backend": backend, "model": model, "api_base": api_base, "api": api,
                                          "concurrency": concurrency}, "options")
    return load_backend(config, api_key)


def _sampling(base, temperature: float | None, max_new_tokens: int | None, batch_size: int | None):
    overrides = {"temperature": temperature, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _read_records(path: Path, strict: bool = False) -> list:
    """Records of an input file; bad lines quarantined beside it (shared by commands that read records)."""
    from workbench.core.io import load_records

    problems: list = []
    records = load_records(path, problems)
    _report_problems(problems, _sibling(path, ".quarantine.jsonl"), strict)
    return records


def _floats(text: str) -> list[float]:
    from workbench.core.errors import InputError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of numbers") from None


def _parse_quota(text: str | None) -> dict[str, float]:
    from workbench.core.errors import InputError
    from workbench.core.records import CATEGORIES, did_you_mean

    quota = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, share = part.partition("=")
        if name.strip() not in CATEGORIES:
            raise InputError(f"--quota: unknown category {name.strip()!r}{did_you_mean(name.strip(), CATEGORIES)}")
        try:
            quota[name.strip()] = float(share)
        except ValueError:
            raise InputError(f"--quota: {part!r} is not CATEGORY=SHARE") from None
    return quota


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
    from workbench.core.config import build_config
    from workbench.core.importers import ImportConfig, import_records, parse_field_map
    from workbench.core.io import write_records

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
    from workbench.core.io import validate_files, write_problems

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
    fmt: Annotated[str, typer.Option("--format", help="dolly, alpaca or sharegpt.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The exported file; its card goes beside it.")],
    run: Annotated[Path | None, typer.Option(help="The run folder that made the records: its stage counts and "
                                             "rejection reasons go into the card.")] = None,
    push_to_hub: Annotated[str | None, typer.Option(help="Also upload to this hub dataset repo (needs a hub).")] = None,
    strict: Strict = False,
):
    """Export records as Dolly, Alpaca or ShareGPT with a dataset card (sources, licences, stages).

    Example: workbench data export runs/demo/review/records.jsonl --format alpaca -o share/advisor.json --run runs/demo
    """
    from workbench.core import export
    from workbench.core.io import atomic_write_text
    from workbench.core.runs import stage_summaries

    records = _read_records(file, strict)
    export.write_export(records, fmt, output)
    card = output.with_name(output.name.removesuffix(output.suffix) + ".README.md")
    atomic_write_text(card, export.dataset_card(records, fmt, output.name, stage_summaries(run) if run else None))
    console.print(f"Exported {len(records):,} records to {output} ({fmt}); dataset card: {card}")
    licenses = {str(r.meta.get("license")) for r in records if r.meta.get("license")}
    for name in export.non_commercial(licenses):
        err_console.print(f"Warning: a non-commercial licence is mixed in ({name}); see the card")
    if push_to_hub:
        url = export.push_to_hub(push_to_hub, {output.name: output, "README.md": card})
        console.print(f"Pushed to {url}")


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
    from workbench.core.io import load_records
    from workbench.core.models import load_tokenizer
    from workbench.core.stats import compute_stats

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
    train_steps: Annotated[int, typer.Option(help="Then train it from scratch for this many steps on the corpus "
                                             "(default corpus: the bundled data in the shapes the loop asks for)."
                                             )] = 0,
):
    """Build a tiny model of a real architecture with a BPE tokenizer trained on the corpus.

    Example: workbench models tiny tiny-falcon --arch falcon --layers 2 --hidden 128 --train-steps 300
    """
    from workbench.core.tiny import TinySpec, build_tiny_model, corpus_texts, domain_texts, pretrain_tiny

    clock = time.perf_counter()
    spec = TinySpec(arch=arch, layers=layers, hidden=hidden, heads=heads, vocab=vocab, seed=seed)
    path = build_tiny_model(out, spec, corpus or None)
    made = json.loads((path / "tiny.json").read_text())
    console.print(f"Built a {arch} model with {made['parameters']:,} parameters in {path} "
                  f"({time.perf_counter() - clock:.1f} s)")
    if train_steps:
        with progress_bar("training steps") as step:
            losses = pretrain_tiny(path, corpus_texts(corpus) if corpus else domain_texts(), train_steps,
                                   seed=seed, progress=lambda done, total, loss: step(done, total))
        console.print(f"Trained {train_steps} steps: loss {losses[0]:.2f} -> {losses[-1]:.2f}")


@models_app.command("check")
def models_check(
    model: Annotated[str, typer.Argument(help="A hub id or local folder.")],
    quant: QuantOption = "none",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    prompt: Annotated[str | None, typer.Option(help="Also generate from this prompt.")] = None,
):
    """Load a model the way every stage does and report what was really loaded (8-bit verified).

    Example: workbench models check tiiuae/falcon-7b --quant 8bit
    """
    from workbench.core.models import GenerationParams, get_model

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
    review: Annotated[str, typer.Option(help="auto: three clearly labelled demo reviewers; manual: people review in "
                                        "the local Argilla UI (the run stops and resumes).")] = "auto",
    keep_server: Annotated[bool, typer.Option(help="Leave the Argilla server running to browse the review.")] = False,
):
    """Run the embedded tiny recipe offline on the bundled catalog and seed tasks (what `make demo` runs).

    Example: workbench demo --runs-dir runs
    """
    from workbench.demo import run_demo
    from workbench.display import run_summary

    with console.status("Running the demo stages...") as status:
        result = run_demo(runs_dir, name, force, lambda stage: status.update(f"Stage: {stage}"), review, keep_server)
    run_summary(result)


@app.command("run")
def run_command(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML file (see recipes/).")],
    name: Annotated[str | None, typer.Option(help="The run's name (default: the recipe's name).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders live.")] = Path("runs"),
    from_stage: Annotated[str | None, typer.Option(
        "--from", help="Start at this stage (generate, dedup, screen, review, finetune, eval, report); earlier ones "
                       "must be done.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    force: Annotated[bool, typer.Option(help="Redo the selected stages even when unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Say which stages would run and why; run nothing.")] = False,
    review: Annotated[str | None, typer.Option(help="auto or manual (overrides the recipe).")] = None,
    keep_server: Annotated[bool, typer.Option(help="Leave the Argilla server running to browse the review.")] = False,
):
    """Run a recipe: generate, dedup, screen, review, finetune, eval, report; unchanged stages are skipped.

    Example: workbench run recipes/course-advisor-tiny.yaml --name try-1 --from screen --dry-run
    """
    from workbench.display import run_summary
    from workbench.recipe import load_recipe, run_recipe

    loaded = load_recipe(recipe)
    if review is not None:
        loaded = loaded.with_review(review)
    with console.status("Running the recipe...") as status:
        result = run_recipe(loaded, runs_dir, name or loaded.name, force=force, from_stage=from_stage, until=until,
                            dry_run=dry_run, on_stage=lambda stage: status.update(f"Stage: {stage}"),
                            keep_server=keep_server)
    run_summary(result)


@generate_app.command("instructions")
def generate_instructions(
    output: Output, model: ModelName, backend: BackendName = "transformers", api_base: ApiBase = None,
    api_key: ApiKey = None, api: Api = "completions", concurrency: Concurrency = 4, seeds: Seeds = None,
    num: Annotated[int, typer.Option(help="Stop after this many accepted instructions.")] = 100,
    rounds: Annotated[int, typer.Option(help="... or after this many rounds.")] = 20,
    quota: Annotated[str | None, typer.Option(help="Category shares that steer the seeds shown, "
                                              "e.g. brainstorming=0.2,closed_qa=0.3.")] = None,
    preset: Preset = "self-instruct", rules: Rules = None, rejected: Rejected = None,
    max_new_tokens: MaxNewTokens = None, temperature: Temperature = None, batch_size: BatchSize = None,
    force: Force = False,
):
    """Bootstrap new instructions from the seed tasks (Self-Instruct); resumes after a kill.

    Example: workbench generate instructions --model tiiuae/falcon-7b-instruct --num 500 -o instructions.jsonl
    """
    from pipelines import bootstrap
    from pipelines.instruction_filter import filter_config
    from workbench.core.catalog import SEED_TASKS

    config = bootstrap.BootstrapConfig(
        num=num, rounds=rounds, quota=_parse_quota(quota), filter=filter_config(preset, rules),
        sampling=_sampling(bootstrap.PAPER_SAMPLING, temperature, max_new_tokens, batch_size))
    generator = _backend(model, backend, api_base, api_key, api, concurrency)
    rejected = rejected or _sibling(output, ".rejected.jsonl")
    with progress_bar("accepted instructions") as step:
        result = bootstrap.run(generator, _read_records(seeds or SEED_TASKS), config, output, rejected, force, step)
    generation_summary(result, output, rejected)


@generate_app.command("instances")
def generate_instances(
    instructions: Annotated[Path, typer.Argument(help="Instruction records (e.g. from `generate instructions`).")],
    output: Output, model: ModelName, backend: BackendName = "transformers", api_base: ApiBase = None,
    api_key: ApiKey = None, api: Api = "completions", concurrency: Concurrency = 4, seeds: Seeds = None,
    max_instances: Annotated[int, typer.Option(help="Instances kept per task at most.")] = 3,
    rejected: Rejected = None, max_new_tokens: MaxNewTokens = None, temperature: Temperature = None,
    batch_size: BatchSize = None, force: Force = False,
):
    """Generate input/output instances for each instruction (output-first for classification tasks).

    Example: workbench generate instances instructions.jsonl --model tiiuae/falcon-7b-instruct -o instances.jsonl
    """
    from pipelines import instances
    from workbench.core.catalog import SEED_TASKS

    base = instances.InstancesConfig()
    config = base.model_copy(update={"max_instances": max_instances,
                                     "sampling": _sampling(base.sampling, temperature, max_new_tokens, batch_size)})
    generator = _backend(model, backend, api_base, api_key, api, concurrency)
    rejected = rejected or _sibling(output, ".rejected.jsonl")
    with progress_bar("instructions") as step:
        result = instances.run(generator, _read_records(instructions), _read_records(seeds or SEED_TASKS), config,
                               output, rejected, force, step)
    generation_summary(result, output, rejected)


@generate_app.command("from-docs")
def generate_from_docs(
    output: Output, model: ModelName,
    docs: Annotated[Path, typer.Option(help="Folder of Markdown, text or HTML documents.")],
    backend: BackendName = "transformers", api_base: ApiBase = None, api_key: ApiKey = None,
    api: Api = "completions", concurrency: Concurrency = 4,
    num: Annotated[int, typer.Option(help="Questions per document.")] = 10,
    grounding: Annotated[float, typer.Option(help="Share of an answer's content words that must occur in "
                                             "the document.")] = 0.5,
    rejected: Rejected = None, force: Force = False,
):
    """Ask questions a prospective student would ask of each document, and answer them from it (closed_qa).

    Example: workbench generate from-docs --docs catalog/ --model tiiuae/falcon-7b-instruct -o catalog-qa.jsonl
    """
    from pipelines import from_docs
    from workbench.core.config import build_config

    config = build_config(from_docs.FromDocsConfig, {"num": num, "grounding": grounding}, "options")
    generator = _backend(model, backend, api_base, api_key, api, concurrency)
    rejected = rejected or _sibling(output, ".rejected.jsonl")
    with progress_bar("documents") as step:
        result = from_docs.run(generator, docs, config, output, rejected, force, step)
    generation_summary(result, output, rejected)


@generate_app.command("filter")
def generate_filter(
    records: Annotated[Path, typer.Argument(help="Records whose `instruction` is judged, in file order.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Kept records (ids unchanged).")],
    pool: Annotated[Path | None, typer.Option(help="Records whose instructions form the starting pool.")] = None,
    preset: Preset = "self-instruct", rules: Rules = None, rejected: Rejected = None, strict: Strict = False,
):
    """Apply the Self-Instruct filters (and ROUGE-L novelty against a pool) to existing records.

    Example: workbench generate filter candidates.jsonl --pool seeds.jsonl -o kept.jsonl --rejected rejected.jsonl
    """
    from pipelines import instruction_filter
    from workbench.core.io import write_records
    from workbench.core.runs import Ledger

    ledger, dropped = Ledger("filter"), []
    starting_pool = [r.instruction for r in _read_records(pool, strict)] if pool else []
    kept = instruction_filter.run(_read_records(records, strict), instruction_filter.filter_config(preset, rules),
                                  ledger, starting_pool, dropped)
    count = write_records(output, kept)
    rejected = rejected or _sibling(output, ".rejected.jsonl")
    write_records(rejected, dropped)
    console.print(f"Kept {count:,} records in {output}; {len(dropped):,} rejected in {rejected}")
    for reason, n in ledger.counts.most_common():
        console.print(f"  {n:,}  {reason}")


@app.command("dedup")
def dedup(
    records: Annotated[Path, typer.Argument(help="Records to deduplicate (JSONL or Parquet).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Kept records.")] = None,
    clusters: Annotated[Path | None, typer.Option(help="One line per removed record: id, duplicate_of, "
                                                  "linked_to, similarity.")] = None,
    rejected: Rejected = None,
    against: Annotated[list[Path] | None, typer.Option(help="Also remove near-duplicates of these records "
                                                       "(repeat the flag).")] = None,
    fields: Annotated[str, typer.Option(help="Fields whose text is compared, comma-separated.")] = (
        "instruction,context"),
    threshold: Annotated[float, typer.Option(help="Jaccard similarity of word n-grams at or above which "
                                             "records are duplicates.")] = 0.7,
    ngram: int = 3, num_perm: int = 128,
    keep: Annotated[str, typer.Option(help="Which record of a cluster stays: first, longest or seed.")] = "first",
    workers: Annotated[int, typer.Option(help="Processes that shingle and hash the texts.")] = 1,
    storage: Annotated[str, typer.Option(help="memory, or redis: datasketch's LSH index in Redis.")] = "memory",
    redis_url: Annotated[str, typer.Option(help="With --storage redis.")] = "redis://127.0.0.1:6379/0",
    dry_run: Annotated[bool, typer.Option(help="Only report what --thresholds would remove.")] = False,
    thresholds: Annotated[str, typer.Option(help="With --dry-run.")] = "0.5,0.6,0.7,0.8,0.9",
    strict: Strict = False,
):
    """Remove near-duplicates (MinHash LSH candidates, verified by exact Jaccard).

    Example: workbench dedup candidates.jsonl -o unique.jsonl --clusters clusters.jsonl --against seeds.jsonl
    """
    from pipelines import dedup as stage
    from pipelines.dedup_file import dedup_file
    from workbench.core.config import build_config
    from workbench.display import dedup_dry_run_table

    config = build_config(stage.DedupConfig, {"fields": tuple(f.strip() for f in fields.split(",")), "keep": keep,
                                              "threshold": threshold, "ngram": ngram, "num_perm": num_perm,
                                              "storage": storage, "redis_url": redis_url, "workers": workers},
                          "options")
    if dry_run:
        inputs, refs = _read_records(records, strict), [r for p in against or [] for r in _read_records(p, strict)]
        return console.print(dedup_dry_run_table(stage.dry_run(inputs, config, _floats(thresholds), references=refs)))
    if output is None:
        raise typer.BadParameter("-o/--output is required unless --dry-run", param_hint="-o")
    # Streams the file in two passes over --workers processes: no record is held in memory.
    result = dedup_file(records, output, config, rejected or _sibling(output, ".rejected.jsonl"), clusters,
                        against or [])
    console.print(f"Kept {result.kept:,} of {result.records:,} records in {output}; removed {result.removed:,}")
    for reason, n in result.reasons.most_common():
        console.print(f"  {n:,}  {reason}")
    _report_problems(result.problems, _sibling(records, ".quarantine.jsonl"), strict)


@app.command("contamination")
def contamination(
    train: Annotated[Path, typer.Argument(help="Training records (instruction + response are compared).")],
    eval: Annotated[list[Path], typer.Option("--eval", help="Eval items JSONL or suite folder (repeat the flag).")],
    report: Annotated[Path | None, typer.Option(help="Write the findings here as JSON.")] = None,
    fail_on_contamination: Annotated[bool, typer.Option(help="Exit 1 when any item is contaminated.")] = False,
    threshold: float = 0.7,
):
    """List eval items that are near-duplicates of training data or share a 13-gram with it.

    Example: workbench contamination curated.jsonl --eval closed_qa_items.jsonl --fail-on-contamination
    """
    from pipelines import contamination as check
    from workbench.core.config import build_config
    from workbench.core.io import atomic_write_text

    config = build_config(check.ContaminationConfig, {"threshold": threshold}, "options")
    problems: list = []
    items = [item for path in eval for item in check.load_eval_items(path, problems)]
    _report_problems(problems, _sibling(eval[0], ".quarantine.jsonl"), False)
    findings = check.check(_read_records(train), items, config)
    for finding in findings:
        matches = {**finding.near_duplicates, **{k: "13-gram" for k in finding.shared_ngrams}}
        console.print(f"{finding.item.source}: {finding.item.id}: {finding.item.question[:70]!r} ~ train "
                      + ", ".join(f"{k} ({v})" for k, v in matches.items()), markup=False)
    console.print(f"{len(findings)} of {len(items)} eval item(s) contaminated by {train}")
    if report:
        atomic_write_text(report, check.report(str(train), [str(p) for p in eval], len(items), findings, config))
    raise typer.Exit(1 if findings and fail_on_contamination else 0)


def _label_thresholds(values: list[str] | None) -> dict[str, tuple[float, float]]:
    from workbench.core.errors import InputError

    thresholds = {}
    for value in values or []:
        label, _, pair = value.partition("=")
        low, _, high = pair.partition(":")
        try:
            thresholds[label.strip()] = (float(low), float(high))
        except ValueError:
            raise InputError(f"--label-threshold {value!r} is not LABEL=PASS:REJECT, e.g. insult=0.05:0.5") from None
    return thresholds


@app.command("screen")
def screen(
    records: Annotated[Path, typer.Argument(help="Records to screen.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="pass and review records.")] = None,
    rejected: Rejected = None,
    scorer: Annotated[str, typer.Option(help="detoxify, or profanity-check (offline, the `profanity` extra).")] = (
        "detoxify"),
    model: Annotated[str, typer.Option(help="detoxify model: original, unbiased or multilingual.")] = "original",
    checkpoint: Annotated[str | None, typer.Option(help="Local detoxify checkpoint.")] = None,
    hf_config: Annotated[str | None, typer.Option(help="Folder with the checkpoint's config and tokenizer.")] = None,
    pass_below: float = 0.1, reject_at: float = 0.8,
    label_threshold: Annotated[list[str] | None, typer.Option(help="LABEL=PASS:REJECT (repeat the flag).")] = None,
    pii: Annotated[bool, typer.Option(help="Send records with personal data to review.")] = True,
    int8: Annotated[bool, typer.Option(help="Dynamic int8 on the CPU (score change reported).")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only count the routes and show the highest scores.")] = False,
    strict: Strict = False,
):
    """Score toxicity per field and route records to pass, review or reject (fails closed).

    Example: workbench screen unique.jsonl -o screened.jsonl --scorer profanity-check
    """
    from pipelines import screen as stage
    from workbench.core.config import build_config
    from workbench.display import screen_summary
    from workbench.core.io import write_records
    from workbench.core.runs import Ledger

    config = build_config(stage.ScreenConfig, {
        "scorer": scorer, "model": model, "checkpoint": checkpoint, "hf_config": hf_config, "pii": pii, "int8": int8,
        "pass_below": pass_below, "reject_at": reject_at, "label_thresholds": _label_thresholds(label_threshold)},
        "options")
    if output is None and not dry_run:
        raise typer.BadParameter("-o/--output is required unless --dry-run", param_hint="-o")
    inputs, dropped = _read_records(records, strict), []
    ledger, loaded = Ledger("screen"), stage.load_scorer(config)
    result = stage.ScreenResult(loaded.name)
    kept = list(stage.run(inputs, config, ledger, loaded, dropped, result))
    if not dry_run:
        write_records(output, kept)
        write_records(rejected or _sibling(output, ".rejected.jsonl"), dropped)
    screen_summary(result, kept + dropped, dry_run)


DataDir = Annotated[Path | None, typer.Option(help="The local server's folder (default ~/.workbench/argilla).")]
ArgillaUrl = Annotated[str | None, typer.Option("--api-url", help="Argilla server (default $ARGILLA_API_URL, "
                                                "else the local server's credentials.json).")]
ArgillaKey = Annotated[str | None, typer.Option("--api-key", help="API key (default $ARGILLA_API_KEY); never printed.")]
Dataset = Annotated[str, typer.Option("--dataset", help="Argilla dataset name.")]
Workspace = Annotated[str, typer.Option(help="Argilla workspace.")]


@annotate_app.command("serve")
def annotate_serve(
    port: int = 6900, data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="0.0.0.0 lets others on the network reach it.")] = "127.0.0.1",
):
    """Start a local Argilla server (SQLite, a Redis, no Elasticsearch) in the background.

    Example: workbench annotate serve --port 6900
    """
    from annotation import server

    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"Warning: listening on {host}: anyone who can reach this machine can reach the server "
                          "(annotators log in with their own passwords).", markup=False)
    with console.status("Starting argilla-server..."):
        served = server.serve(data_dir, host=host, port=port)
    where = data_dir or server.default_data_dir()
    state = "already running" if served.already_running else "started"
    console.print(f"Argilla {state}: {served.api_url}  (data: {where}; Redis: {served.redis})")
    console.print(f"Log in as [bold]{served.credentials.username}[/] with the password in {where}/credentials.json; "
                  f"stop it with `workbench annotate stop`.")


@annotate_app.command("stop")
def annotate_stop(data_dir: DataDir = None):
    """Stop the local Argilla server (and the Redis it started).

    Example: workbench annotate stop --data-dir ~/.workbench/argilla
    """
    from annotation import server

    where = data_dir or server.default_data_dir()
    console.print(f"Stopped the server of {where}" if server.stop(data_dir) else f"No server running for {where}")


@annotate_app.command("setup")
def annotate_setup(venv: Annotated[Path | None, typer.Option(help="Where to build it.")] = None):
    """Build argilla-server's own environment (for a pip-installed workbench; `make setup` does it in a checkout).

    Example: workbench annotate setup
    """
    from annotation import server

    with console.status("Installing argilla-server into its own environment..."):
        path = server.setup(venv)
    console.print(f"argilla-server is installed in {path}")


@users_app.command("add")
def annotate_users_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="annotator, admin or owner.")] = "annotator",
    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
    data_dir: DataDir = None,
):
    """Create an account in a workspace and print its password once.

    Example: workbench annotate users add alice --role annotator
    """
    from annotation import review

    client = review.connect(api_url, api_key, data_dir)
    password = review.add_user(client, username, role, workspace)
    console.print(f"Created {role} {username!r} in workspace {workspace!r} on {review.api_url_of(client)}")
    console.print(f"Password (shown once): {password}", markup=False)


@annotate_app.command("push")
def annotate_push(
    records: Annotated[Path, typer.Argument(help="Records to review (JSONL).")], dataset: Dataset,
    workspace: Workspace = "workbench",
    min_submitted: Annotated[int, typer.Option(help="Submitted responses a record needs to be complete.")] = 1,
    batch_size: int = 100, api_url: ArgillaUrl = None, api_key: ArgillaKey = None, data_dir: DataDir = None,
    strict: Strict = False,
):
    """Push records to an Argilla dataset (created if needed; pushing again updates, never duplicates).

    Example: workbench annotate push screened.jsonl --dataset advisor-round-1
    """
    from annotation import review

    inputs = _read_records(records, strict)
    client = review.connect(api_url, api_key, data_dir)
    with progress_bar(f"Pushing to {dataset}") as update:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            update(done, len(inputs))

        result = review.push(inputs, dataset, client=client, workspace=workspace, min_submitted=min_submitted,
                             batch_size=batch_size, progress=advance)
    created = "created" if result.created else "updated"
    retried = f" ({result.retries} retries)" if result.retries else ""
    console.print(f"Pushed {result.pushed:,} records to {workspace}/{dataset} ({created}); "
                  f"{result.on_server:,} records on the server{retried}")


@annotate_app.command("pull")
def annotate_pull(
    dataset: Dataset, output: Annotated[Path, typer.Option("-o", "--output", help="Curated records (JSONL).")],
    disputed: Annotated[Path | None, typer.Option(help="Records the policy cannot decide (default: beside -o).")] = (
        None),
    policy: Annotated[str, typer.Option(help="majority, unanimous or any-discard.")] = "majority",
    since_last: Annotated[bool, typer.Option(help="Only records completed since the previous pull.")] = False,
    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
    data_dir: DataDir = None,
):
    """Pull the reviewed records: submitted responses resolved by the policy, corrections applied.

    Example: workbench annotate pull --dataset advisor-round-1 -o curated.jsonl --policy majority
    """
    from annotation import review
    from annotation.server import default_data_dir
    from workbench.display import pull_summary
    from workbench.core.io import atomic_write_text, write_records

    if since_last and output.exists():
        # A since-last pull holds only the new records: writing it over an earlier pull would lose that one.
        raise typer.BadParameter(f"{output} exists; --since-last writes only the records completed since the "
                                 "previous pull, so give it a new file", param_hint="-o")
    client = review.connect(api_url, api_key, data_dir)
    url, state_dir = review.api_url_of(client), data_dir or default_data_dir()
    since = review.load_pull_state(state_dir, url, workspace, dataset) if since_last else None
    pulled, problems = review.resolve(review.fetch(client, dataset, workspace), policy, dataset=dataset,
                                      users=review.user_names(client), since=since)
    for problem in problems:
        err_console.print(problem, markup=False)
    paths = {"curated": output, "disputed": disputed or _sibling(output, ".disputed.jsonl"),
             "discarded": _sibling(output, ".discarded.jsonl"), "ledger": _sibling(output, ".ledger.jsonl")}
    write_records(paths["curated"], pulled.curated)
    write_records(paths["disputed"], pulled.disputed)
    write_records(paths["discarded"], pulled.discarded)
    atomic_write_text(paths["ledger"], pulled.ledger.to_jsonl())
    review.save_pull_state(state_dir, url, workspace, dataset, {**(since or {}), **pulled.seen})
    pull_summary(pulled, paths)


@annotate_app.command("export")
def annotate_export(
    dataset: Dataset, output: Annotated[Path, typer.Option("-o", "--output", help="JSONL backup.")],
    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
    data_dir: DataDir = None,
):
    """Every record with all raw responses (user, status, values, times): a backup that needs no server.

    Example: workbench annotate export --dataset advisor-round-1 -o advisor-round-1.backup.jsonl
    """
    from annotation import review
    from workbench.core.io import atomic_open

    client = review.connect(api_url, api_key, data_dir)
    rows = review.export_rows(review.fetch(client, dataset, workspace), review.user_names(client))
    count = 0
    with atomic_open(output) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    console.print(f"Exported {count:,} records of {workspace}/{dataset} to {output}")


@annotate_app.command("agreement")
def annotate_agreement(
    dataset: Annotated[str | None, typer.Option("--dataset", help="Argilla dataset name.")] = None,
    export: Annotated[Path | None, typer.Option("--from", help="An `annotate export` file instead of a server.")] = (
        None),
    workspace: Workspace = "workbench", api_url: ArgillaUrl = None, api_key: ArgillaKey = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
):
    """Agreement per question (percent, Cohen's kappa per pair, Krippendorff's alpha) and per-annotator counts.

    Example: workbench annotate agreement --dataset advisor-round-1
    """
    from annotation import review
    from annotation.agreement import agreement, to_dict
    from workbench.display import agreement_tables

    if (dataset is None) == (export is None):
        raise typer.BadParameter("give --dataset (a server) or --from (an export file)", param_hint="--dataset")
    if export is not None:
        from workbench.core.io import Problem, read_json_lines

        problems: list = []
        rows = []
        for line, obj, raw in read_json_lines(export, problems):
            if not isinstance(obj.get("id"), str) or not isinstance(obj.get("responses"), list):
                field = "id" if not isinstance(obj.get("id"), str) else "responses"
                problems.append(Problem(str(export), line, field, "missing or not an export row "
                                        "(`workbench annotate export` writes them)", raw))
                continue
            rows.append(obj)
        _report_problems(problems, _sibling(export, ".quarantine.jsonl"), False)
    else:
        client = review.connect(api_url, api_key, data_dir)
        rows = list(review.export_rows(review.fetch(client, dataset, workspace), review.user_names(client)))
    result = agreement(rows)
    if as_json:
        console.print_json(json.dumps(to_dict(result)))
        return
    for table in agreement_tables(result, dataset or str(export)):
        console.print(table)


@app.command("finetune")
def finetune_command(
    base: Annotated[str, typer.Option("--base", help="Base model: hub id or folder.")],
    data: Annotated[Path, typer.Option("--data", help="Curated records (JSONL).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Adapter folder.")] = None,
    quant: Annotated[str, typer.Option(help="8bit, 4bit, none; default 8bit on CUDA, none on the CPU.")] = "auto",
    epochs: float = 3.0, lr: float = 2e-4, rank: int = 16, alpha: int = 32,
    max_length: Annotated[int, typer.Option(help="Longer examples are dropped and reported.")] = 1024,
    packing: Annotated[bool, typer.Option(help="Several examples per row, kept apart (no padding).")] = True,
    batch_size: int = 8, grad_accum: int = 1, grad_checkpointing: bool = True, save_steps: int = 200,
    eval_split: float = 0.05, max_steps: int = -1, seed: int = 42,
    system_prompt: Annotated[bool, typer.Option(help="The course-advisor system prompt in every example.")] = False,
    budget_gib: Annotated[float | None, typer.Option(help="Refuse configurations needing more memory "
                                                     "(default: the GPU's memory).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in -o.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Show one tokenized example and check the data; no training.")] = (
        False),
    strict: Strict = False,
):
    """Train a LoRA adapter on curated records (8-bit base on CUDA, loss on responses only, packing).

    Example: workbench finetune --base tiiuae/falcon-7b --data curated.jsonl -o adapters/advisor
    """
    from pipelines import finetune as stage
    from workbench.core.config import build_config
    from workbench.display import dry_run_report, finetune_summary
    from workbench.core.io import sha256_file
    from workbench.core.models import load_tokenizer

    config = build_config(stage.FinetuneConfig, {
        "quant": quant, "epochs": epochs, "lr": lr, "rank": rank, "alpha": alpha, "max_length": max_length,
        "packing": packing, "batch_size": batch_size, "grad_accum": grad_accum,
        "grad_checkpointing": grad_checkpointing, "save_steps": save_steps, "eval_split": eval_split,
        "max_steps": max_steps, "seed": seed,
        "system_prompt": system_prompt}, "options")
    records = _read_records(data, strict)
    if dry_run:
        dry_run_report(stage.dry_run(records, load_tokenizer(base), config), config)
        return
    if output is None:
        raise typer.BadParameter("-o/--output is required unless --dry-run", param_hint="-o")
    with progress_bar("Finetuning") as update:
        result = stage.finetune(base, records, output, config, resume=resume, data_sha256=sha256_file(data),
                                data_path=str(data.resolve()), budget_gib=budget_gib, progress=update)
    finetune_summary(result)


@app.command("merge")
def merge_command(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder (from `workbench finetune`).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Merged model folder.")],
    dtype: Annotated[str, typer.Option(help="bfloat16, float16 or float32 (never 8-bit).")] = "bfloat16",
    base: Annotated[str | None, typer.Option(help="Base model (default: the one the adapter names).")] = None,
):
    """Merge an adapter into its base reloaded in 16-bit; checks the merged logits against base + adapter.

    Example: workbench merge adapters/advisor -o models/advisor-merged
    """
    from pipelines.finetune import merge

    with console.status("Merging..."):
        report = merge(adapter, output, dtype, base)
    console.print(f"Merged {adapter} into {report['base_model']} ({report['dtype']}) -> {output}; logits agree "
                  f"within {report['max_logit_difference']:.2g} on {report['prompts']} prompts")


SuitesDir = Annotated[list[Path] | None, typer.Option("--suites-dir", help="A folder of your own suites, searched "
                                                      "before the bundled ones (repeat the flag).")]


@eval_app.command("list")
def eval_list(suites_dir: SuitesDir = None):
    """The eval suites that can be named with --suite.

    Example: workbench eval list --suites-dir my-suites
    """
    from rich.table import Table

    from eval_suites.registry import list_suites, load_suite

    table = Table(title="Eval suites")
    for column in ("suite", "items", "task", "metrics", "folder"):
        table.add_column(column)
    for name in list_suites(suites_dir):
        suite = load_suite(name, suites_dir)
        table.add_row(name, str(len(suite.items)), suite.config.task, ", ".join(suite.config.metrics), str(suite.path))
    console.print(table)


@eval_app.command("run")
def eval_run(
    suite: Annotated[list[str], typer.Option("--suite", help="Suite name or folder (repeat the flag).")],
    model: ModelName,
    output: Annotated[Path, typer.Option("-o", "--output", help="Results folder (one subfolder per suite).")],
    adapter: AdapterOption = None,
    name: Annotated[str | None, typer.Option(help="Label in reports (default: the adapter's or model's name).")] = None,
    backend: BackendName = "transformers", api_base: ApiBase = None, api_key: ApiKey = None, api: Api = "completions",
    concurrency: Concurrency = 4,
    quant: Annotated[str, typer.Option(help="none, 8bit or 4bit (transformers).")] = "none",
    max_new_tokens: MaxNewTokens = None, batch_size: BatchSize = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N items of each suite (a quick look).")] = None,
    suites_dir: SuitesDir = None,
):
    """Answer every item of the suites with the model (cached), score the answers, write the results.

    Example: workbench eval run --suite course_advisor --suite closed_qa --model tiiuae/falcon-7b
    --adapter adapters/advisor --quant 8bit -o results/finetuned
    """
    from eval_suites.runner import evaluate
    from workbench.core.backends import BackendConfig
    from workbench.core.config import build_config
    from workbench.display import eval_run_summary, progress_tasks

    config = build_config(BackendConfig, {"backend": backend, "model": model, "adapter": adapter, "quant": quant,
                                          "api_base": api_base, "api": api, "concurrency": concurrency}, "options")
    with progress_tasks() as new_task:
        runs = evaluate(suite, config, output, name=name, suites_dirs=suites_dir, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, limit=limit, api_key=api_key, progress=new_task)
    eval_run_summary(runs)
    console.print(f"Results in {output}")


@eval_app.command("score")
def eval_score(
    suite: Annotated[str, typer.Option("--suite", help="Suite name or folder.")],
    predictions: Annotated[Path, typer.Option("--predictions", help='JSONL of {"id", "prediction"} lines.')],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the scores as JSON.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    suites_dir: SuitesDir = None, strict: Strict = False,
):
    """Score existing predictions on a suite (no model needed).

    Example: workbench eval score --suite closed_qa --predictions answers.jsonl -o scores.json
    """
    from eval_suites.registry import load_suite
    from eval_suites.runner import default_toxicity_config, read_predictions, score_suite
    from pipelines.screen import load_scorer
    from workbench.display import metrics_table
    from workbench.core.io import atomic_write_text

    loaded = load_suite(suite, suites_dir)
    problems: list = []
    answers = read_predictions(predictions, problems)
    _report_problems(problems, _sibling(predictions, ".quarantine.jsonl"), strict)
    toxicity = load_scorer(default_toxicity_config()) if "toxicity_rate" in loaded.config.metrics else None
    scores = score_suite(loaded, answers, toxicity)
    result = {"suite": loaded.name, "predictions": str(predictions), "metrics": scores.metrics,
              "missing": scores.missing, "notes": scores.notes, "items": scores.rows}
    if output:
        atomic_write_text(output, json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "items"}, indent=2))
        return
    console.print(metrics_table(f"{predictions} on {loaded.name}", scores.metrics))
    for note in scores.notes:
        err_console.print(f"Note: {note}")
    if scores.missing:
        err_console.print(f"Warning: {len(scores.missing)} of {len(loaded.items)} items have no prediction "
                          f"(first: {scores.missing[0]}); scored on the other {len(scores.rows)}")


@eval_app.command("compare")
def eval_compare(
    results: Annotated[list[Path], typer.Argument(help="Results folders of `eval run`; the first is the baseline.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML report (summary.json goes beside it).")],
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed: the same seed gives the same CIs.")] = 0,
    max_toxicity_rate: Annotated[float | None, typer.Option(help="Exit 1 when a model's answers are toxic more "
                                                            "often than this (0-1).")] = None,
    judge: Annotated[str | None, typer.Option(help="A model that judges answers pairwise (both orders).")] = None,
    judge_backend: Annotated[str, typer.Option(help="The judge's backend: transformers or openai.")] = "transformers",
    api_base: ApiBase = None, api_key: ApiKey = None,
):
    """Compare models: means with 95% bootstrap CIs, paired differences, plots, answers side by side.

    Example: workbench eval compare results/base results/finetuned -o report.html --max-toxicity-rate 0.01
    """
    from eval_suites.compare import compare, markdown, suite_items, write_report
    from eval_suites.judge import judge_all
    from workbench.core.backends import BackendConfig
    from workbench.core.config import build_config

    comparison = compare(results, resamples=bootstrap, seed=seed, max_toxicity_rate=max_toxicity_rate)
    items = suite_items(comparison)
    if judge:
        config = build_config(BackendConfig, {"backend": judge_backend, "model": judge, "api_base": api_base},
                              "options")
        comparison.summary["judge"] = judge_all(config, comparison.models, comparison.suites, items, bootstrap, seed,
                                                api_key)
    summary = write_report(comparison, output, items)
    console.print(markdown(comparison), markup=False)
    console.print(f"Report: {output}; summary: {summary}")
    for violation in comparison.toxicity_violations:
        err_console.print(f"Error: {violation}")
    if comparison.toxicity_violations:
        raise typer.Exit(1)


@inspect_app.command("next-token")
def inspect_next_token(
    prompt: Annotated[str, typer.Argument(help="The text the model continues.")],
    model: ModelName,
    adapter: AdapterOption = None,
    top_k: Annotated[int, typer.Option(help="How many of the most likely tokens to show.")] = 10,
    steps: Annotated[int, typer.Option(help="Append the most likely token and show the next step, N times.")] = 1,
    compare: Annotated[str | None, typer.Option(help="A second model, side by side (it sees the same text).")] = None,
    compare_adapter: Annotated[str | None, typer.Option(help="LoRA adapter for --compare.")] = None,
):
    """The next-token distribution (token, probability), step by step, for one model or two side by side.

    Example: workbench inspect next-token --model tiiuae/falcon-7b "Addressing climate change requires" --steps 3
    --compare tiiuae/falcon-7b-instruct
    """
    from workbench.display import next_token_tables
    from workbench.core.models import get_model
    from workbench.core.next_token import next_tokens

    models = [get_model(model, adapter=adapter)]
    labels = [Path(adapter or model).name]
    if compare:
        models.append(get_model(compare, adapter=compare_adapter))
        labels.append(Path(compare_adapter or compare).name)
    for table in next_token_tables(next_tokens(models, prompt, top_k, steps), labels):
        console.print(table)


Catalog = Annotated[Path | None, typer.Option(help="A catalog folder (*.md programme pages): the best-matching page "
                                              "is given as context (BM25), so answers are grounded.")]
SystemPrompt = Annotated[bool, typer.Option(help="The course-advisor system prompt.")]


def _answer(loaded, question: str, page, system_prompt: bool, max_new_tokens: int) -> None:
    from workbench.assistant import advisor_prompt, stream_answer
    from workbench.core.models import GenerationParams
    from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, ANSWER_STOPS

    prompt = advisor_prompt(question, page.text if page else "", loaded.tokenizer,
                            ADVISOR_SYSTEM_PROMPT if system_prompt else None)
    for piece in stream_answer(loaded, prompt, GenerationParams(max_new_tokens=max_new_tokens, stop=ANSWER_STOPS)):
        console.print(piece, end="", markup=False, highlight=False)
    console.print()


def _assistant(model: str, adapter: str | None, catalog: Path | None, quant: str):
    """The catalog retriever (or None) and the loaded model, as ask, chat and serve use them."""
    from workbench.assistant import Retriever
    from workbench.core.models import get_model

    return Retriever.from_catalog(catalog) if catalog else None, get_model(model, quant=quant, adapter=adapter)


def _retrieve(retriever, question: str, previous=None):
    """The best page for the question; a follow-up that names no programme keeps the previous page."""
    found = retriever.search(question, k=1) if retriever else []
    page = found[0][0] if found else previous
    if retriever:
        err_console.print(f"[dim]Context: {page.name} ({page.path})[/]" if page else "[dim]Context: none matched[/]")
    return page


@app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="A prospective student's question.")],
    model: ModelName,
    adapter: AdapterOption = None,
    catalog: Catalog = None, system_prompt: SystemPrompt = True,
    quant: QuantOption = "none",
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated at most.")] = 128,
):
    """Answer one question as the course-advisor assistant, streaming the answer.

    Example: workbench ask --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog
    "Do I have to know programming to apply for the business information systems course?"
    """
    retriever, loaded = _assistant(model, adapter, catalog, quant)
    _answer(loaded, question, _retrieve(retriever, question), system_prompt, max_new_tokens)


@app.command("chat")
def chat(
    model: ModelName,
    adapter: AdapterOption = None,
    catalog: Catalog = None, system_prompt: SystemPrompt = True,
    quant: QuantOption = "none",
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated at most per answer.")] = 128,
):
    """Talk to the course-advisor assistant: one question per line; `exit` or Ctrl-D ends.

    Example: workbench chat --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog
    """
    retriever, loaded = _assistant(model, adapter, catalog, quant)
    page = None
    while True:
        try:
            question = console.input("[bold]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if question.lower() in ("exit", "quit"):
            break
        if question:
            page = _retrieve(retriever, question, page)
            console.print("[bold]advisor>[/] ", end="")
            _answer(loaded, question, page, system_prompt, max_new_tokens)


RunsDir = Annotated[Path, typer.Option(help="Where run folders live.")]


@runs_app.command("list")
def runs_list(runs_dir: RunsDir = Path("runs"), as_json: Annotated[bool, typer.Option("--json")] = False):
    """The runs in the runs folder, with their stages and timings.

    Example: workbench runs list --runs-dir runs
    """
    from workbench.display import runs_table
    from workbench.core.runs import list_runs

    runs = list_runs(runs_dir)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
    else:
        console.print(runs_table(runs))


@runs_app.command("show")
def runs_show(run: Annotated[str, typer.Argument(help="A run's name (in --runs-dir) or folder.")],
              runs_dir: RunsDir = Path("runs"), as_json: Annotated[bool, typer.Option("--json")] = False):
    """A run's stages: status, timings, counts, rejection reasons and where their files are.

    Example: workbench runs show demo
    """
    from workbench.display import stage_lines
    from workbench.core.runs import stage_summaries

    folder = Path(run) if Path(run).is_dir() else runs_dir / run
    stages = stage_summaries(folder)
    if as_json:
        click.echo(json.dumps({"run": folder.name, "path": str(folder), "stages": stages}, indent=2))
    else:
        for line in stage_lines(folder.name, stages):
            console.print(line, markup=False, highlight=False)


@app.command("doctor")
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
    """Check Python, torch, CUDA, real 8-bit loading, the Argilla server environment, Redis, the hub and disk.

    Example: workbench doctor
    """
    from workbench.display import doctor_table
    from workbench.doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        console.print(doctor_table(checks))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


@app.command("serve")
def serve(
    model: ModelName,
    adapter: AdapterOption = None,
    catalog: Catalog = None,
    name: Annotated[str | None, typer.Option(help="The model name clients ask for (default: the adapter's or "
                                             "model's folder name).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    quant: QuantOption = "none",
):
    """Serve the assistant on an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions).

    Example: workbench serve --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog
    """
    import uvicorn

    from workbench.serve import create_app

    label = name or Path(adapter or model).name
    retriever, loaded = _assistant(model, adapter, catalog, quant)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"Warning: listening on {host}: anyone who can reach it can use the model (no key)")
    err_console.print(f"Serving {label!r} at http://{host}:{port}/v1 (OPENAI_BASE_URL); Ctrl-C stops")
    uvicorn.run(create_app(loaded, label, retriever), host=host, port=port, log_level="warning")


@app.command("trace")
def trace(
    record_id: Annotated[str, typer.Argument(help="A record id (or a unique prefix of one).")],
    run: Annotated[Path, typer.Option(help="The run folder.")] = Path("runs/demo"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
):
    """A record's whole life in a run: origin, every filter verdict, dedup, screen, review, adapters, contamination.

    Example: workbench trace eb2ac551 --run runs/demo
    """
    from workbench.display import trace_lines
    from workbench.trace import trace as trace_record

    found = trace_record(run, record_id)
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for line in trace_lines(found):
        console.print(line, markup=False, highlight=False)


if __name__ == "__main__":
    app()

"""The loop as Python functions, with the CLI's names and defaults: what a notebook calls, and what every command
of the `workbench` CLI is a thin call to. Each returns the stage's typed result (its files, counts, ledger reasons
and the bad input lines it quarantined); bad input raises a `WorkbenchError` with one line to show.

    import workbench
    tiny = workbench.build_tiny_model("tiny", train_steps=300)
    workbench.generate_instructions("instructions.jsonl", model="tiny", num=20)
    workbench.dedup(["instructions.jsonl"], "unique.jsonl")

Settings a stage reads from its config (sampling, thresholds, LoRA's rank, ...) are keyword arguments named as the
CLI's options; their defaults are the config models' own (`pipelines.finetune.FinetuneConfig`, ...).
`progress` is a callback(done, total) for long loops; `say` gets one-line warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from annotation import agreement as agreement_stage
from annotation import client as argilla_client
from annotation import review, server
from eval_suites import judge_agreement as judge_agreement_stage
from eval_suites import report, runner
from pipelines import bootstrap, contamination, from_docs, instances, instruction_filter, preferences, responses
from pipelines import dedup as dedup_stage
from pipelines import finetune as finetune_stage
from pipelines import screen as screen_stage
from pipelines.dedup_index import drop_index as drop_named_index
from pipelines.resumable import refuse_unappendable
from workbench.core import export, teaching
from workbench.core.backends import BackendConfig, load_backend
from workbench.core.catalog import SEED_TASKS
from workbench.core.config import defaults, options
from workbench.core.errors import InputError
from workbench.core.importers import ImportConfig, import_file, parse_field_map
from workbench.core.runs import Outputs
from workbench.core.teaching import build_and_train
from workbench.core.tiny import TinySpec

Progress = Callable[[int, int], None] | None
Say = Callable[[str], None] | None


BACKEND = defaults(BackendConfig)
BOOTSTRAP, INSTANCES = defaults(bootstrap.BootstrapConfig), defaults(instances.InstancesConfig)
RESPONSES, FROM_DOCS = defaults(responses.ResponsesConfig), defaults(from_docs.FromDocsConfig)
DEDUP, SCREEN = defaults(dedup_stage.DedupConfig), defaults(screen_stage.ScreenConfig)
FINETUNE, REPORT = defaults(finetune_stage.FinetuneConfig), defaults(report.ReportConfig)
PAIRS, CONTAMINATION = defaults(preferences.PairsConfig), defaults(contamination.ContaminationConfig)
TINY = defaults(TinySpec)
PUSH, PULL = defaults(review.push_file), defaults(review.pull)


def _endpoint(model: str, backend: str, api_base, api: str, concurrency: int, **extra) -> BackendConfig:
    return options(BackendConfig, backend=backend, model=model, api_base=list(api_base) if api_base else None,
                   api=api, concurrency=concurrency, **extra)


def _sampling(defaults, max_new_tokens, temperature, batch_size):
    return defaults.override(temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size)


def _judge(judge: str | None, judge_backend: str, api_base) -> BackendConfig | None:
    return options(BackendConfig, backend=judge_backend, model=judge, api_base=api_base) if judge else None


# --- models and data ---------------------------------------------------------------------------------------------

def build_tiny_model(out: str | Path, *, arch: str = TINY.arch, layers: int = TINY.layers, hidden: int = TINY.hidden,
                     heads: int = TINY.heads, vocab: int = TINY.vocab, seed: int = TINY.seed,
                     corpus: Sequence[Path] | None = None, train_steps: int = 0,
                     progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Build a tiny model of a real architecture (falcon or llama) with a BPE tokenizer trained on the corpus (default:
    the bundled catalog and seeds), and train it from scratch for `train_steps`; returns its parameters, seconds and
    losses."""
    spec = TinySpec(arch=arch, layers=layers, hidden=hidden, heads=heads, vocab=vocab, seed=seed)
    return build_and_train(Path(out), spec, list(corpus) if corpus else None, train_steps, progress)


def build_tiny_pair(out: str | Path, **settings):
    """The demo's two tiny models with one tokenizer, offline: a base in OUT/model (plain domain text, the stand-in for
    falcon-7b) and an instruct model in OUT/instruct (the base trained further on the prompt formats, for
    falcon-7b-instruct). `settings`: TinyModelConfig's fields (train_steps, instruct_steps, layers, hidden, ...)."""
    return teaching.train_pair(options(teaching.TinyModelConfig, **settings), Outputs.folder(Path(out), "tiny-model"))


def import_data(source: str, output: str | Path, *, format: str | None = None, map: str | None = None,
                lang: str | None = None, source_label: str | None = None, allow_unknown_categories: bool = False):
    """Import Dolly, OASST1, Alpaca or record JSONL into records; returns (ImportResult, bad lines)."""
    config = options(ImportConfig, format=format, field_map=parse_field_map(map), lang=lang, source=source_label,
                     allow_unknown_categories=allow_unknown_categories)
    return import_file(source, config, Path(output))


# --- generate ------------------------------------------------------------------------------------------------------

def generate_instructions(output: str | Path, model: str, *, seeds: str | Path | None = None,
                          num: int = BOOTSTRAP.num, rounds: int = BOOTSTRAP.rounds, quota: str | None = None,
                          preset: str = "self-instruct", rules: str | Path | None = None,
                          max_new_tokens: int | None = None, temperature: float | None = None,
                          batch_size: int | None = None, backend: str = BACKEND.backend,
                          api_base: Sequence[str] | None = None, api_key: str | None = None, api: str = BACKEND.api,
                          concurrency: int = BACKEND.concurrency, rejected: str | Path | None = None,
                          force: bool = False, allow_empty: bool = False, progress: Progress = None, say: Say = None):
    """Bootstrap new instructions from the seed tasks (Self-Instruct); resumes after a kill."""
    output, seeds = Path(output), Path(seeds) if seeds else SEED_TASKS
    config = options(bootstrap.BootstrapConfig, num=num, rounds=rounds, quota=bootstrap.parse_quota(quota),
                     filter=instruction_filter.filter_config(preset, Path(rules) if rules else None),
                     sampling=_sampling(bootstrap.PAPER_SAMPLING, max_new_tokens, temperature, batch_size))
    out = Outputs.beside(output, "instructions", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    out.guard([seeds])  # before the model loads
    generator = load_backend(_endpoint(model, backend, api_base, api, concurrency), api_key, say=say)
    return bootstrap.run(generator, seeds, config, out, force, progress)


def generate_instances(instructions: str | Path, output: str | Path, model: str, *, seeds: str | Path | None = None,
                       max_instances: int = INSTANCES.max_instances, max_new_tokens: int | None = None,
                       temperature: float | None = None, batch_size: int | None = None,
                       backend: str = BACKEND.backend, api_base: Sequence[str] | None = None,
                       api_key: str | None = None, api: str = BACKEND.api, concurrency: int = BACKEND.concurrency,
                       rejected: str | Path | None = None, force: bool = False, allow_empty: bool = False,
                       progress: Progress = None, say: Say = None):
    """Generate input/output instances for each instruction (output-first for classification tasks)."""
    output, seeds, instructions = Path(output), Path(seeds) if seeds else SEED_TASKS, Path(instructions)
    config = options(instances.InstancesConfig, max_instances=max_instances,
                     sampling=_sampling(INSTANCES.sampling, max_new_tokens, temperature, batch_size))
    out = Outputs.beside(output, "instances", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    out.guard([instructions, seeds])  # before the model loads
    generator = load_backend(_endpoint(model, backend, api_base, api, concurrency), api_key, say=say)
    return instances.run(generator, instructions, seeds, config, out, force, progress)


def generate_responses(records: str | Path, output: str | Path, model: str | Sequence[str], *,
                       adapter: Sequence[str | None] | None = None, n: int = RESPONSES.n,
                       keep_original: bool = RESPONSES.keep_original, system_prompt: bool = RESPONSES.system_prompt,
                       max_new_tokens: int | None = None, temperature: float | None = None,
                       batch_size: int | None = None, backend: str = BACKEND.backend,
                       api_base: Sequence[str] | None = None, api_key: str | None = None, api: str = BACKEND.api,
                       concurrency: int = BACKEND.concurrency, rejected: str | Path | None = None,
                       force: bool = False, allow_empty: bool = False, progress: Progress = None, say: Say = None):
    """Write N candidate responses per instruction (generators rotate over the models, each with its adapter, 'none'
    for none), to rank in review and to pair for DPO; resumes after a kill."""
    models = [model] if isinstance(model, str) else list(model)
    adapters = [None if a in ("none", "", None) else a for a in adapter or []]
    if len(adapters) > len(models):
        raise InputError(f"--adapter: {len(adapters)} --adapter for {len(models)} --model")
    output, records = Path(output), Path(records)
    config = options(responses.ResponsesConfig, n=n, keep_original=keep_original, system_prompt=system_prompt,
                     sampling=_sampling(RESPONSES.sampling, max_new_tokens, temperature, batch_size))
    out = Outputs.beside(output, "responses", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    out.guard([records])  # before the models load
    generators = [load_backend(_endpoint(name, backend, api_base, api, concurrency, adapter=tuned), api_key, say=say)
                  for name, tuned in zip(models, adapters + [None] * (len(models) - len(adapters)))]
    return responses.run(generators, records, config, out, force, progress)


def generate_from_docs(output: str | Path, model: str, docs: str | Path, *, num: int = FROM_DOCS.num,
                       grounding: float = FROM_DOCS.grounding, backend: str = BACKEND.backend,
                       api_base: Sequence[str] | None = None, api_key: str | None = None, api: str = BACKEND.api,
                       concurrency: int = BACKEND.concurrency, rejected: str | Path | None = None,
                       force: bool = False, allow_empty: bool = False, progress: Progress = None, say: Say = None):
    """Ask questions a prospective student would ask of each document, and answer them from it (closed_qa)."""
    output = Path(output)
    config = options(from_docs.FromDocsConfig, num=num, grounding=grounding)
    out = Outputs.beside(output, "from-docs", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    refuse_unappendable(output, rejected)
    generator = load_backend(_endpoint(model, backend, api_base, api, concurrency), api_key, say=say)
    return from_docs.run(generator, Path(docs), config, out, force, progress)


def filter_instructions(records: str | Path, output: str | Path, *, pool: str | Path | None = None,
                        preset: str = "self-instruct", rules: str | Path | None = None,
                        rejected: str | Path | None = None, allow_empty: bool = False):
    """Apply the Self-Instruct filters (and ROUGE-L novelty against a pool) to existing records."""
    out = Outputs.beside(Path(output), "filter", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    return instruction_filter.run(Path(records), instruction_filter.filter_config(preset, Path(rules) if rules
                                                                                   else None), out,
                                  Path(pool) if pool else None)


# --- dedup, contamination, screen ----------------------------------------------------------------------------------

def dedup_config(*, fields: str | Sequence[str] = ",".join(DEDUP.fields), threshold: float = DEDUP.threshold,
                 ngram: int = DEDUP.ngram, num_perm: int = DEDUP.num_perm, keep: str = DEDUP.keep,
                 workers: int = DEDUP.workers, storage: str = DEDUP.storage,
                 redis_url: str = DEDUP.redis_url) -> dedup_stage.DedupConfig:
    """Dedup's settings from the CLI's options (`fields` comma-separated or a list)."""
    names = fields.split(",") if isinstance(fields, str) else fields
    return options(dedup_stage.DedupConfig, fields=tuple(f.strip() for f in names), keep=keep, threshold=threshold,
                   ngram=ngram, num_perm=num_perm, storage=storage, redis_url=redis_url, workers=workers)


def dedup(records: Sequence[str | Path], output: str | Path, *, against: Sequence[str | Path] = (),
          index: str | None = None, against_index: Sequence[str] = (), clusters: str | Path | None = None,
          rejected: str | Path | None = None, allow_empty: bool = False, say: Say = None, **settings):
    """Remove near-duplicates (MinHash LSH candidates verified by exact Jaccard) from the records taken as one set,
    and of the records in `against` and the named Redis indexes; `index` also adds the kept ones to that index.
    `settings`: those of `dedup_config` (fields, threshold, ngram, num_perm, keep, workers, storage, redis_url)."""
    out = Outputs.beside(Path(output), "dedup", files={"dropped.jsonl": rejected, "clusters.jsonl": clusters},
                         allow_empty=allow_empty)
    return dedup_stage.run([Path(r) for r in records], dedup_config(**settings), out, [Path(a) for a in against],
                           index=index, against_indexes=list(against_index), say=say)


def preview_dedup(records: Sequence[str | Path], *, thresholds: str = "0.5,0.6,0.7,0.8,0.9",
                  against: Sequence[str | Path] = (), **settings):
    """What each threshold would remove, with example pairs; writes nothing. Returns (rows, bad lines)."""
    return dedup_stage.preview([Path(r) for r in records], dedup_config(**settings),
                               dedup_stage.parse_thresholds(thresholds), [Path(a) for a in against])


def drop_dedup_index(name: str, *, redis_url: str = DEDUP.redis_url) -> int:
    """Remove a named dedup index from Redis; returns how many records it held."""
    return drop_named_index(name, dedup_config(redis_url=redis_url))


def check_contamination(train: str | Path, eval: Sequence[str | Path], report_file: str | Path | None = None, *,
                        threshold: float = CONTAMINATION.threshold):
    """Eval items that are near-duplicates of the training records or share a 13-gram with them."""
    train = Path(train)
    where = Path(report_file) if report_file else train.with_name(train.name.removesuffix(train.suffix)
                                                                  + ".contamination.json")
    out = Outputs.beside(where, "contamination", main="report.json")
    return contamination.run(train, [Path(e) for e in eval],
                             options(contamination.ContaminationConfig, threshold=threshold), out)


def screen_config(*, scorer: str = SCREEN.scorer, model: str = SCREEN.model, checkpoint: str | None = None,
                  hf_config: str | None = None, pass_below: float = SCREEN.pass_below,
                  reject_at: float = SCREEN.reject_at, label_threshold: Sequence[str] | None = None,
                  pii: bool = SCREEN.pii, int8: bool = SCREEN.int8) -> screen_stage.ScreenConfig:
    """The screen's settings from the CLI's options (`label_threshold`: LABEL=PASS:REJECT strings)."""
    return options(screen_stage.ScreenConfig, scorer=scorer, model=model, checkpoint=checkpoint, hf_config=hf_config,
                   pii=pii, int8=int8, pass_below=pass_below, reject_at=reject_at,
                   label_thresholds=screen_stage.parse_label_thresholds(label_threshold))


def screen(records: str | Path, output: str | Path, *, rejected: str | Path | None = None,
           allow_empty: bool = False, **settings):
    """Score toxicity per field and route records to pass, review or reject (fails closed). `settings`: those of
    `screen_config` (scorer, model, checkpoint, hf_config, pass_below, reject_at, label_threshold, pii, int8)."""
    out = Outputs.beside(Path(output), "screen", files={"dropped.jsonl": rejected}, allow_empty=allow_empty)
    return screen_stage.run(Path(records), screen_config(**settings), out)


def preview_screen(records: str | Path, **settings):
    """The routes and the scored records without writing anything: (screened, records, bad lines, scorer)."""
    config = screen_config(**settings)
    return (*screen_stage.preview(Path(records), config), config.scorer)


# --- review --------------------------------------------------------------------------------------------------------

def serve_argilla(data_dir: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 6900,
                  database: str | None = None, workers: int = 1):
    """Start (or find running) a local Argilla server; returns where it answers and its owner's credentials.
    `database`: a PostgreSQL URL for a class's server (kept by the data dir); SQLite in the data dir otherwise.
    `workers`: server processes, which share the database (a class's server: about one per core)."""
    return server.serve(Path(data_dir) if data_dir else None, host=host, port=port, database=database,
                        workers=workers)


def connect_argilla(api_url: str | None = None, api_key: str | None = None, data_dir: str | Path | None = None):
    """An Argilla client: the URL and key given, else $ARGILLA_API_URL/$ARGILLA_API_KEY, else the local server's."""
    return argilla_client.connect(api_url, api_key, Path(data_dir) if data_dir else None)


def push(records: str | Path, dataset: str, *, workspace: str = review.DEFAULT_WORKSPACE,
         min_submitted: int = PUSH.min_submitted, batch_size: int = PUSH.batch_size, compare: bool = PUSH.compare,
         adjudicate: bool = PUSH.adjudicate, in_flight: int = PUSH.in_flight, api_url: str | None = None,
         api_key: str | None = None, data_dir: str | Path | None = None, progress: Progress = None):
    """Push records to an Argilla dataset for review (created if needed; pushing again updates, never duplicates);
    `compare`: the records are candidates to rank; `adjudicate`: a pull's disputed records, with every annotator's
    answers side by side, for one adjudicator; `in_flight`: batches sent at once (a server with several workers).
    Returns (PushResult, bad lines)."""
    from workbench.core.io import check_readable

    check_readable(Path(records))  # a missing file is named before the server is asked
    return review.push_file(Path(records), dataset, connect_argilla(api_url, api_key, data_dir), workspace=workspace,
                            min_submitted=min_submitted, batch_size=batch_size, compare=compare, progress=progress,
                            adjudicate=adjudicate, in_flight=in_flight)


def pull(dataset: str, output: str | Path, *, disputed: str | Path | None = None, policy: str = PULL.policy,
         since_last: bool = False, workspace: str = review.DEFAULT_WORKSPACE, api_url: str | None = None,
         api_key: str | None = None, data_dir: str | Path | None = None, exclude: Sequence[str] = ()):
    """Pull the reviewed records: the answers resolved by the policy, corrections applied; `exclude`: usernames
    whose answers are left out (the set rebuilt without one student's votes)."""
    out = Outputs.beside(Path(output), "review", dropped=".discarded.jsonl", files={"disputed.jsonl": disputed})
    return review.pull(connect_argilla(api_url, api_key, data_dir), dataset, out, policy=policy, workspace=workspace,
                       since_last=since_last, state_dir=Path(data_dir) if data_dir else None, exclude=tuple(exclude))


def review_as_demo(dataset: str, *, workspace: str = review.DEFAULT_WORKSPACE, api_url: str | None = None,
                   api_key: str | None = None, data_dir: str | Path | None = None, progress: Progress = None):
    """The three labelled demo reviewers answer every record of any dataset they have not answered yet (a dry run
    of a class exercise; a comparison gets their rankings); returns how many of each decision each gave. Their
    accounts are made in the workspace on first use, their passwords kept in the local server's folder."""
    from annotation import demo_reviewer

    where = Path(data_dir) if data_dir else server.default_data_dir()
    return demo_reviewer.review_all(connect_argilla(api_url, api_key, data_dir), dataset, workspace, where,
                                    progress=progress)


def export_review(dataset: str, output: str | Path, *, workspace: str = review.DEFAULT_WORKSPACE,
                  api_url: str | None = None, api_key: str | None = None, data_dir: str | Path | None = None) -> int:
    """Every record of a dataset with all its raw responses, as JSONL; returns how many records."""
    return review.export(connect_argilla(api_url, api_key, data_dir), dataset, Path(output), workspace)


def agreement(dataset: str | None = None, *, export_file: str | Path | None = None,
              workspace: str = review.DEFAULT_WORKSPACE, api_url: str | None = None, api_key: str | None = None,
              data_dir: str | Path | None = None):
    """Agreement per question and per annotator, from a server's dataset or an `export_review` file; returns
    (AgreementResult, bad lines)."""
    rows, problems = _review_rows(dataset, export_file, workspace, api_url, api_key, data_dir)
    return agreement_stage.agreement(rows), problems


def _review_rows(dataset, export_file, workspace, api_url, api_key, data_dir):
    """(export rows, bad lines) of a server's dataset or of an `export_review` file: one of the two."""
    if (dataset is None) == (export_file is None):
        raise InputError("--dataset: give --dataset (a server) or --from (an export file)")
    if export_file:
        return agreement_stage.read_export(Path(export_file))
    return agreement_stage.server_rows(connect_argilla(api_url, api_key, data_dir), dataset, workspace), []


def class_progress(dataset: str | None = None, *, export_file: str | Path | None = None,
                   workspace: str = review.DEFAULT_WORKSPACE, api_url: str | None = None, api_key: str | None = None,
                   data_dir: str | Path | None = None):
    """Per student: submitted, discarded, drafts, agreement (and kappa) with the others' majority, seconds per
    record, flags where far below the class (`annotation.progress`); returns (students, bad lines)."""
    from annotation.progress import class_progress as progress_of

    rows, problems = _review_rows(dataset, export_file, workspace, api_url, api_key, data_dir)
    return progress_of(rows), problems


# --- finetune ------------------------------------------------------------------------------------------------------

def finetune_config(**settings) -> finetune_stage.FinetuneConfig:
    """Finetuning's settings (method, epochs, lr, rank, ... as the CLI's options); unknown names are refused."""
    return options(finetune_stage.FinetuneConfig, **settings)


def finetune(base: str, data: str | Path, output: str | Path, *, resume: bool = False,
             ref_adapter: str | Path | None = None, budget_gib: float | None = None, processes: int = 1,
             accelerate_config: str | Path | None = None, progress=None, say: Say = None, **settings):
    """Train a LoRA adapter on curated records (method sft) or on preference pairs (method dpo); `settings` are
    FinetuneConfig's fields (epochs, lr, rank, alpha, dropout, max_length, packing, batch_size, ...)."""
    out = Outputs.beside(Path(output), "finetune", main="adapter")
    return finetune_stage.run(base, Path(data), finetune_config(**settings), out, resume=resume,
                              budget_gib=budget_gib, ref_adapter=str(ref_adapter) if ref_adapter else None,
                              processes=processes, accelerate_config=Path(accelerate_config) if accelerate_config
                              else None, progress=progress, say=say)


def preview_finetune(base: str, data: str | Path, **settings):
    """One tokenized example and the data check, without training: (report, bad lines)."""
    config = finetune_config(**settings)
    preview = finetune_stage.preview_pairs if config.method == "dpo" else finetune_stage.preview
    return preview(base, Path(data), config)


def merge(adapter: str | Path, output: str | Path, *, dtype: str = "bfloat16", base: str | None = None):
    """Merge an adapter into its base reloaded in 16-bit; checks the merged logits against base + adapter."""
    return finetune_stage.merge(Path(adapter), Path(output), dtype, base)


# --- evaluate ------------------------------------------------------------------------------------------------------

def evaluate(suite: str | Sequence[str], model: str, output: str | Path, *, adapter: str | None = None,
             name: str | None = None, quant: str = BACKEND.quant, limit: int | None = None,
             max_new_tokens: int | None = None, batch_size: int | None = None,
             suites_dir: Sequence[str | Path] | None = None, backend: str = BACKEND.backend,
             api_base: Sequence[str] | None = None, api_key: str | None = None, api: str = BACKEND.api,
             concurrency: int = BACKEND.concurrency, progress=None, say: Say = None):
    """Answer every item of the suites with the model (cached), score the answers, write the results (one folder
    per suite under `output`). `progress`: new_task(description) -> callback(done, total)."""
    suites = (suite,) if isinstance(suite, str) else tuple(suite)
    config = _endpoint(model, backend, api_base, api, concurrency, adapter=adapter, quant=quant)
    settings = runner.EvalConfig(suites=suites, limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens)
    return runner.run(config, settings, Outputs.beside(Path(output), "eval", main="results"), name=name,
                      suites_dirs=[Path(d) for d in suites_dir] if suites_dir else None, api_key=api_key,
                      progress=progress, say=say)


def score(suite: str, predictions: str | Path, output: str | Path | None = None, *,
          suites_dir: Sequence[str | Path] | None = None, partial: bool = False):
    """Score existing predictions ({"id", "prediction"} lines) on a suite: (scores, bad lines, the suite)."""
    return runner.score_file(suite, Path(predictions), Path(output) if output else None,
                             [Path(d) for d in suites_dir] if suites_dir else None, partial)


def draft_suite(pages: str | Path, output: str | Path, *, name: str | None = None, force: bool = False):
    """Draft an eval suite from your pages: each page's questions with its own sentence as the reference, and
    questions it cannot answer (right answer: say so). A draft for people to check before trusting the scores."""
    from eval_suites.draft import draft_suite as draft

    return draft(pages, output, name=name, force=force)


def compare(results: Sequence[str | Path], output: str | Path, *, bootstrap: int = REPORT.bootstrap,
            seed: int = REPORT.seed, max_toxicity_rate: float | None = REPORT.max_toxicity_rate,
            judge: str | None = None, judge_backend: str = BACKEND.backend, api_base: Sequence[str] | None = None,
            api_key: str | None = None):
    """Compare `evaluate` results (the first is the baseline): means with 95% bootstrap CIs, paired differences,
    answers side by side, in an HTML report with summary.json and summary.md beside it."""
    output = Path(output)
    config = options(report.ReportConfig, bootstrap=bootstrap, seed=seed, max_toxicity_rate=max_toxicity_rate)
    # report.html keeps summary.json beside it; any other name (a.html, b.html in one folder) its own a.summary.json
    stem = "" if output.name == "report.html" else output.name.removesuffix(output.suffix) + "."
    out = Outputs.beside(output, "report", main="report.html", files={
        "summary.json": output.with_name(f"{stem}summary.json"), "summary.md": output.with_name(f"{stem}summary.md")})
    return report.run([Path(r) for r in results], config, out, _judge(judge, judge_backend, api_base), api_key)


def judge_agreement(judge: str, source: str | Path, *, judge_backend: str = BACKEND.backend,
                    api_base: Sequence[str] | None = None, api_key: str | None = None,
                    bootstrap: int = REPORT.bootstrap, seed: int = REPORT.seed):
    """How often the pairwise judge agrees with the people's majority on pairs they ranked: (result, bad lines)."""
    read, problems = judge_agreement_stage.read_pairs(Path(source))
    config = options(BackendConfig, backend=judge_backend, model=judge, api_base=api_base)
    return judge_agreement_stage.judge_agreement(config, read, resamples=bootstrap, seed=seed,
                                                 api_key=api_key), problems


def export_data(file: str | Path, fmt: str, output: str | Path, *, run: str | Path | None = None,
                pairs: str = PAIRS.pairs, system_prompt: bool = PAIRS.system_prompt, tokenizer: str | None = None,
                judge: str | None = None, judge_backend: str = BACKEND.backend,
                api_base: Sequence[str] | None = None, api_key: str | None = None, allow_empty: bool = False):
    """Export records as dolly, alpaca or sharegpt with a dataset card (an `export.Exported`), or as dpo preference
    pairs (a PairsResult) from rankings, corrections and judge verdicts."""
    if fmt != "dpo" and (pairs != PAIRS.pairs or system_prompt or tokenizer or judge):
        raise InputError("--format: --pairs, --system-prompt, --tokenizer and --judge make preference pairs: use "
                         "them with --format dpo")
    if fmt == "dpo":
        config = options(preferences.PairsConfig, pairs=pairs, system_prompt=system_prompt, tokenizer=tokenizer,
                         judge=_judge(judge, judge_backend, api_base))
        out = Outputs.beside(Path(output), "pairs", main="pairs.jsonl", dropped=".dropped.jsonl",
                             allow_empty=allow_empty)
        return preferences.run(Path(file), config, out, api_key)
    return export.export_file(Path(file), fmt, Path(output), Path(run) if run else None)


# --- the whole loop ------------------------------------------------------------------------------------------------

def init(directory: str | Path, pages: str | Path, *, suite: str | Path | None = None, tiny: bool = False,
         force: bool = False):
    """Write DIRECTORY/recipe.yaml for your own pages (a folder of Markdown, text, HTML or PDF): the real models by
    default, the offline tiny pair trained on those pages with `tiny`; evaluated on `suite` (a folder in the suite
    format) when given. Returns what it found (pages, words, titles, unreadable pages) and where it wrote."""
    from workbench.recipe import start_recipe

    return start_recipe(directory, pages, suite=suite, tiny=tiny, force=force)


def run_recipe(recipe, *, name: str | None = None, runs_dir: str | Path = "runs", review_mode: str | None = None,
               force: bool = False, from_stage: str | None = None, until: str | None = None, dry_run: bool = False,
               keep_server: bool = False, allow_empty: bool = False, on_stage: Callable[[str], None] | None = None):
    """Run a recipe (a YAML path or a `Recipe`): generate, dedup, screen, review, finetune, eval, report; unchanged
    stages are skipped. `review_mode`: auto (demo reviewers) or manual (people, in the Argilla UI)."""
    from workbench.recipe import Recipe, load_recipe
    from workbench.recipe import run_recipe as run_loaded

    loaded = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    loaded = loaded.with_review(review_mode) if review_mode is not None else loaded
    return run_loaded(loaded, runs_dir, name or loaded.name, force=force, from_stage=from_stage, until=until,
                      dry_run=dry_run, on_stage=on_stage, keep_server=keep_server, allow_empty=allow_empty)


def demo(*, runs_dir: str | Path = "runs", name: str = "demo", force: bool = False, keep_server: bool = False,
         review_mode: str = "auto", on_stage: Callable[[str], None] | None = None):
    """The embedded tiny recipe offline on the bundled catalog and seed tasks (what `make demo` runs)."""
    from workbench.recipe import Recipe

    return run_recipe(Recipe(), name=name, runs_dir=runs_dir, review_mode=review_mode, force=force,
                      keep_server=keep_server, on_stage=on_stage)



"""The offline demo: the longest part of the loop that works, on the bundled data, in a run folder.

Stages so far: check the seed tasks and the catalog; build a tiny Falcon-architecture model and train it
for a minute on the bundled text (so it writes text shaped like the domain); then generate with it
through the real transformers backend: Self-Instruct instructions, their instances, and questions
grounded in the catalog; then remove near-duplicates among them and of the seeds, and screen them for
toxicity (offline scorer); then review them in a real local Argilla server (started for the stage and stopped
after it) with three clearly labelled automatic demo reviewers, or with people (`--review manual`), pull the
curated set back, and finetune a LoRA adapter on it (the tiny model, on the CPU); then evaluate the base model and
the finetuned one on the course-advisor and closed Q&A suites and write the comparison report (HTML + summary.json).
Each stage writes a manifest and is skipped on rerun while its config and inputs are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipelines import bootstrap, dedup, finetune, from_docs, instances, screen
from workbench.catalog import CATALOG_DIR, SEED_TASKS, load_catalog
from workbench.errors import InputError
from workbench.io import Problem, atomic_write_text, load_records, write_problems, write_records
from workbench.models import GenerationParams
from workbench.runs import Ledger, Stage, StageOutcome, run_stage
from workbench.stats import Stats, compute_stats
from workbench.tiny import TinySpec, build_tiny_model, default_corpus, domain_texts, pretrain_tiny


class TinyModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Literal["falcon", "llama"] = "falcon"  # falcon: the architecture of falcon-7b
    layers: int = 2  # falcon-7b has 32
    hidden: int = 128  # falcon-7b has 4544
    heads: int = 4  # falcon-7b has 71
    vocab: int = 2000  # falcon-7b has 65,024
    train_steps: int = 300  # ~25 s on 2 CPU cores; loss falls from ~7.6 to under 1
    seed: int = 0  # weight initialisation and batch order


class SeedsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_field_bytes: int = 1_000_000  # longer text fields are quarantined
    allow_unknown_categories: bool = False  # only Dolly's eight categories


class CatalogConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_programmes: int = 12  # the course-advisor suite asks about a dozen programmes


# The demo's generation settings: the paper's sampling, shorter completions for a tiny model on a CPU.
DEMO_BOOTSTRAP = bootstrap.BootstrapConfig(
    num=40, rounds=4, sampling=bootstrap.PAPER_SAMPLING.model_copy(update={"max_new_tokens": 320}))
DEMO_INSTANCES = instances.InstancesConfig(sampling=GenerationParams(max_new_tokens=100, stop=("Task:",)))
DEMO_FROM_DOCS = from_docs.FromDocsConfig(num=4)


DEMO_DEDUP = dedup.DedupConfig()
# detoxify when its weights were downloaded before (they cannot be downloaded here), else the offline scorer;
# the stage's manifest and the demo's output say which ran.
DEMO_SCREEN = screen.ScreenConfig(scorer="detoxify" if screen.cached_detoxify_weights() else "profanity-check")


class ReviewConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["demo", "manual"] = "demo"  # demo: three automatic reviewers; manual: wait for people
    dataset: str = "demo-candidates"
    min_submitted: int = 2  # a record is complete once two reviewers submitted
    policy: Literal["majority", "unanimous", "any-discard"] = "majority"


# The demo's adapter: the tiny model, full precision on the CPU, a few epochs over the curated set.
DEMO_FINETUNE = finetune.FinetuneConfig(quant="none", epochs=3, lr=5e-3, batch_size=2, max_length=1024,
                                        eval_split=0.1, grad_checkpointing=False, save_steps=50, logging_steps=2)


class EvalStageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    suites: tuple[str, ...] = ("course_advisor", "closed_qa")
    batch_size: int = 16  # speed only


class ReportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: int = 1000
    seed: int = 0
    max_toxicity_rate: float | None = None  # the demo reports the rate; a recipe can make it a gate


DEMO_EVAL = EvalStageConfig()
DEMO_REPORT = ReportConfig()


@dataclass
class DemoResult:
    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)
    stats: Stats | None = None
    problems: list[Problem] = field(default_factory=list)
    programmes: list[dict] = field(default_factory=list)
    report: Path | None = None  # report.html of the base vs finetuned comparison
    argilla: object | None = None  # the review server left running (--keep-server): annotation.server.Served


def tiny_model_stage(run_dir: Path, config: TinyModelConfig, force: bool = False) -> StageOutcome:
    corpus = default_corpus()

    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        spec = TinySpec(**config.model_dump(exclude={"train_steps"}))
        out = build_tiny_model(stage.path("model"), spec, corpus)
        losses = pretrain_tiny(out, domain_texts(seed=config.seed), config.train_steps, seed=config.seed)
        atomic_write_text(stage.path("losses.json"), json.dumps([round(x, 4) for x in losses]) + "\n")
        parameters = json.loads((out / "tiny.json").read_text())["parameters"]
        return {"parameters": parameters, "train_steps": config.train_steps,
                "first_loss_x100": round(losses[0] * 100), "last_loss_x100": round(losses[-1] * 100)}

    return run_stage(Stage(run_dir, "tiny-model", config, corpus), work, force=force)


def seeds_stage(run_dir: Path, config: SeedsConfig, seeds: Path = SEED_TASKS, force: bool = False) -> StageOutcome:
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        problems: list[Problem] = []
        records = load_records(seeds, problems, max_field_bytes=config.max_field_bytes,
                               allow_unknown_categories=config.allow_unknown_categories)
        write_records(stage.path("records.jsonl"), records)
        write_problems(stage.path("dropped.jsonl"), problems)
        stats = compute_stats(records)
        atomic_write_text(stage.path("stats.json"), json.dumps(stats.to_dict(), indent=2) + "\n")
        return {"in": len(records) + len(problems), "out": len(records), "quarantined": len(problems)}

    return run_stage(Stage(run_dir, "seeds", config, [seeds]), work, force=force)


def catalog_stage(run_dir: Path, config: CatalogConfig, catalog_dir: Path = CATALOG_DIR,
                  force: bool = False) -> StageOutcome:
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        catalog = load_catalog(catalog_dir)
        if len(catalog) < config.min_programmes:
            raise InputError(f"{catalog_dir}: {len(catalog)} programmes, fewer than {config.min_programmes}")
        programmes = [{"slug": p.slug, "name": p.name, "words": len(p.text.split()),
                       "programming_required": bool(p.header["programming_required"]),
                       "language": p.header["language"], "path": p.path.name}
                      for p in catalog]
        atomic_write_text(stage.path("programmes.json"), json.dumps(programmes, indent=2) + "\n")
        return {"programmes": len(programmes), "words": sum(p["words"] for p in programmes)}

    return run_stage(Stage(run_dir, "catalog", config, [catalog_dir]), work, force=force)


def generation_stage(run_dir: Path, name: str, config: BaseModel, inputs: list[Path], model_dir: Path,
                     generate: Callable, force: bool = False) -> StageOutcome:
    """A generation stage: records.jsonl (kept) and dropped.jsonl (rejected, with reasons), resumable."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from workbench.models import get_model

        result = generate(get_model(str(model_dir)), stage.path("records.jsonl"), stage.path("dropped.jsonl"))
        ledger.counts.update({f"drop: {reason}": n for reason, n in result.reasons.items()})
        return {"kept": result.kept, "rejected": result.rejected, **result.usage}

    return run_stage(Stage(run_dir, name, config, [*inputs, model_dir]), work, force=force)


def dedup_stage(run_dir: Path, config: dedup.DedupConfig, candidates: list[Path], seed_file: Path,
                force: bool = False) -> StageOutcome:
    """All generated candidates together, near-duplicates removed, also against the seed tasks."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        records = [r for path in candidates for r in load_records(path, [])]
        removed, dropped = [], []
        kept = write_records(stage.path("records.jsonl"),
                             dedup.run(records, config, ledger, load_records(seed_file, []), removed, dropped))
        write_records(stage.path("dropped.jsonl"), dropped)
        atomic_write_text(stage.path("clusters.jsonl"), "".join(json.dumps(line) + "\n" for line in removed))
        return {"in": len(records), "out": kept, "removed": len(dropped)}

    return run_stage(Stage(run_dir, "dedup", config, [*candidates, seed_file], frozenset({"workers"})), work,
                     force=force)


def screen_stage(run_dir: Path, config: screen.ScreenConfig, candidates: Path, force: bool = False) -> StageOutcome:
    """Score the deduplicated candidates; pass and review go on, rejected ones are kept with their scores."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        rejected: list = []
        result = screen.ScreenResult(config.scorer)
        records = load_records(candidates, [])
        kept = write_records(stage.path("records.jsonl"),
                             screen.run(records, config, ledger, screen.load_scorer(config), rejected, result))
        write_records(stage.path("dropped.jsonl"), rejected)
        return {"in": len(records), "out": kept, **{f"route_{k}": v for k, v in sorted(result.counts.items())}}

    return run_stage(Stage(run_dir, "screen", config, [candidates], screen.SPEED_ONLY), work, force=force)


def review_stage(run_dir: Path, config: ReviewConfig, candidates: Path, force: bool = False,
                 say: Callable[[str], None] = lambda text: None) -> StageOutcome:
    """Push the screened candidates to a local Argilla server, review them, pull the curated set back."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from annotation import demo_reviewer, review, server
        from annotation.agreement import agreement, to_dict

        data_dir = stage.path("argilla").resolve()
        served = server.serve(data_dir, port=server.free_port())
        try:
            client = review.connect(served.api_url, served.credentials.api_key)
            records = load_records(candidates, [])
            pushed = review.push(records, config.dataset, client=client, min_submitted=config.min_submitted)
            if config.mode == "manual":
                say(f"waiting for reviewers at {served.api_url} (user {served.credentials.username}, password in "
                    f"{data_dir / 'credentials.json'}; `workbench annotate users add NAME` adds annotators); "
                    "Ctrl-C pulls what is complete")
                demo_reviewer.wait_for_humans(client, config.dataset, server.DEFAULT_WORKSPACE,
                                              on_progress=lambda p: say(f"reviewed {p.get('completed', 0)} of "
                                                                        f"{p.get('total', 0)} at {served.api_url}"))
            else:
                demo_reviewer.review_all(client, config.dataset, server.DEFAULT_WORKSPACE, data_dir)
            raw = list(review.fetch(client, config.dataset))
            users = review.user_names(client)
        finally:
            server.stop(data_dir)
        pulled, problems = review.resolve(raw, config.policy, dataset=config.dataset, users=users)
        write_records(stage.path("records.jsonl"), pulled.curated)
        write_records(stage.path("disputed.jsonl"), pulled.disputed)
        write_records(stage.path("dropped.jsonl"), pulled.discarded)
        rows = list(review.export_rows(raw, users))
        atomic_write_text(stage.path("export.jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        atomic_write_text(stage.path("agreement.json"), json.dumps(to_dict(agreement(rows)), indent=2) + "\n")
        ledger.counts.update(pulled.ledger.counts)
        corrected = sum(1 for r in pulled.curated if r.lineage[-1]["action"] == "edit")
        return {"pushed": pushed.pushed, "curated": len(pulled.curated), "corrected": corrected,
                "disputed": len(pulled.disputed), "discarded": len(pulled.discarded), "pending": pulled.pending,
                "problems": len(problems)}

    return run_stage(Stage(run_dir, "review", config, [candidates]), work, force=force)


def finetune_stage(run_dir: Path, config: finetune.FinetuneConfig, curated: Path, model_dir: Path,
                   force: bool = False) -> StageOutcome:
    """A LoRA adapter on the curated set, with its manifest and loss plot in the stage folder."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        import shutil

        from workbench.io import sha256_file

        records = load_records(curated, [])
        adapter = stage.path("adapter")
        shutil.rmtree(adapter, ignore_errors=True)  # a forced rerun starts over; the stage is short
        result = finetune.finetune(str(model_dir), records, adapter, config, device="cpu",
                                   data_sha256=sha256_file(curated), data_path=str(curated.resolve()))
        m = result.manifest
        if m["dropped_too_long"]:
            ledger.counts["drop: longer than max_length"] += len(m["dropped_too_long"])
        losses = [p["loss"] for p in m["train_loss"]]
        return {"examples": m["train_examples"], "held_out": m["eval_examples"], "steps": m["steps"],
                "first_loss_x100": round(100 * losses[0]) if losses else 0,
                "last_loss_x100": round(100 * losses[-1]) if losses else 0}

    return run_stage(Stage(run_dir, "finetune", config, [curated, model_dir], finetune.SPEED_ONLY), work,
                     force=force)


def eval_stage(run_dir: Path, name: str, label: str, config: EvalStageConfig, model_dir: Path,
               adapter: Path | None = None, force: bool = False) -> StageOutcome:
    """Answer and score the suites with one model (the base, or the base with the adapter)."""
    from eval_suites.registry import find_suite

    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from eval_suites.runner import evaluate
        from workbench.backends import BackendConfig

        backend = BackendConfig(model=str(model_dir), adapter=str(adapter) if adapter else None, device="cpu")
        runs = evaluate(list(config.suites), backend, stage.path("results"), name=label,
                        batch_size=config.batch_size)
        counts = {"items": sum(r.manifest["items"] for r in runs),
                  "generated": sum(r.manifest["cache"]["generated"] for r in runs)}
        for r in runs:
            f1 = r.scores.metrics.get("f1", {}).get("value")
            if f1 is not None:
                counts[f"{r.suite.name}_f1_x1000"] = round(1000 * f1)
        return counts

    suites = [find_suite(s) for s in config.suites]
    inputs = [model_dir, *([adapter] if adapter else []), *suites]
    return run_stage(Stage(run_dir, name, config, inputs, frozenset({"batch_size"})), work, force=force)


def report_stage(run_dir: Path, config: ReportConfig, results: list[Path], force: bool = False) -> StageOutcome:
    """Compare the evaluated models: report.html and summary.json in the stage folder."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from eval_suites.compare import compare, markdown, suite_items, write_report

        comparison = compare(results, resamples=config.bootstrap, seed=config.seed,
                             max_toxicity_rate=config.max_toxicity_rate)
        write_report(comparison, stage.path("report.html"), suite_items(comparison))
        atomic_write_text(stage.path("summary.md"), markdown(comparison))
        contaminated = sum(len(c["contaminated"]) for per in comparison.summary["contamination"].values()
                           for c in per.values() if c and c.get("checked"))
        return {"models": len(comparison.models), "suites": len(comparison.suites), "contaminated": contaminated,
                "toxicity_violations": len(comparison.toxicity_violations)}

    return run_stage(Stage(run_dir, "report", config, results), work, force=force)


def run_demo(runs_dir: str | Path = "runs", name: str = "demo", force: bool = False,
             on_stage: Callable[[str], None] | None = None, review: str = "demo",
             keep_server: bool = False) -> DemoResult:
    """Run every demo stage in runs_dir/name; returns what each stage did (or that it was skipped)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # tiny models load in milliseconds
    result = DemoResult(run_dir=Path(runs_dir) / name)
    say = on_stage or (lambda stage: None)
    say("seeds")
    seeds = seeds_stage(result.run_dir, SeedsConfig(), force=force)
    say("catalog")
    result.outcomes += [seeds, catalog_stage(result.run_dir, CatalogConfig(), force=force)]
    say("tiny-model (training a tiny Falcon on the bundled text)")
    model = tiny_model_stage(result.run_dir, TinyModelConfig(), force)
    result.outcomes.append(model)
    model_dir = model.stage.path("model")
    seed_records = load_records(seeds.stage.path("records.jsonl"), result.problems)
    seed_file = seeds.stage.path("records.jsonl")
    say("instructions")
    made = generation_stage(result.run_dir, "instructions", DEMO_BOOTSTRAP, [seed_file], model_dir,
                            lambda m, out, rej: bootstrap.run(m, seed_records, DEMO_BOOTSTRAP, out, rej, force),
                            force)
    instructions = made.stage.path("records.jsonl")
    say("instances")
    with_instances = generation_stage(
        result.run_dir, "instances", DEMO_INSTANCES, [instructions, seed_file], model_dir,
        lambda m, out, rej: instances.run(m, load_records(instructions, []), seed_records, DEMO_INSTANCES, out, rej,
                                          force), force)
    say("from-docs")
    grounded = generation_stage(result.run_dir, "from-docs", DEMO_FROM_DOCS, [CATALOG_DIR], model_dir,
                                lambda m, out, rej: from_docs.run(m, CATALOG_DIR, DEMO_FROM_DOCS, out, rej, force),
                                force)
    say("dedup")
    unique = dedup_stage(result.run_dir, DEMO_DEDUP, [with_instances.stage.path("records.jsonl"),
                                                      grounded.stage.path("records.jsonl")], seed_file, force)
    say(f"screen (scorer: {DEMO_SCREEN.scorer})")
    screened = screen_stage(result.run_dir, DEMO_SCREEN, unique.stage.path("records.jsonl"), force)
    say(f"review (a local Argilla server; {'demo reviewers' if review == 'demo' else 'waiting for people'})")
    reviewed = review_stage(result.run_dir, ReviewConfig(mode=review), screened.stage.path("records.jsonl"), force,
                            say=lambda text: say(f"review: {text}"))
    say("finetune (a LoRA adapter on the curated set)")
    tuned = finetune_stage(result.run_dir, DEMO_FINETUNE, reviewed.stage.path("records.jsonl"), model_dir, force)
    say("eval-base (the tiny base model on the course-advisor and closed Q&A suites)")
    base_eval = eval_stage(result.run_dir, "eval-base", "base", DEMO_EVAL, model_dir, force=force)
    say("eval-finetuned (the base with the adapter)")
    tuned_eval = eval_stage(result.run_dir, "eval-finetuned", "finetuned", DEMO_EVAL, model_dir,
                            tuned.stage.path("adapter"), force)
    say("report (bootstrap CIs, paired differences, answers side by side)")
    report = report_stage(result.run_dir, DEMO_REPORT, [base_eval.stage.path("results"),
                                                        tuned_eval.stage.path("results")], force)
    result.outcomes += [made, with_instances, grounded, unique, screened, reviewed, tuned, base_eval, tuned_eval,
                        report]
    result.report = report.stage.path("report.html")
    if keep_server:  # the review stage stops its server; start it again on the same data to browse the review
        from annotation import server

        say("argilla (keeping the review server running)")
        result.argilla = server.serve(reviewed.stage.path("argilla").resolve(), port=server.free_port())
    result.stats = compute_stats(seed_records)
    result.programmes = json.loads(result.outcomes[1].stage.path("programmes.json").read_text())
    return result

"""The loop's stages as steps (a Stage and the work that makes its outputs), their demo settings, and `run_demo`.

`workbench.recipe.run_recipe` strings the steps together: check the seed tasks and the catalog; build a tiny
Falcon-architecture model and train it on the bundled text (so it writes text shaped like the domain); generate
through a backend (Self-Instruct instructions, their instances, questions grounded in the catalog); remove
near-duplicates among them and of the seeds; screen them for toxicity; review them in a real local Argilla server
(three clearly labelled automatic demo reviewers, or people: `--review manual` stops the run and the next run
resumes); check the curated set against the eval suites (contamination); finetune a LoRA adapter on it; evaluate the
base (and an instruct model) and the finetuned one; write the comparison report (HTML + summary.json). Each stage
writes a manifest and is skipped on rerun while its config and inputs are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines import bootstrap, dedup, finetune, from_docs, instances, screen
from workbench.core.backends import BackendConfig
from workbench.core.catalog import CATALOG_DIR, SEED_TASKS, load_catalog
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.io import Problem, atomic_write_text, load_records, write_problems, write_records
from workbench.core.models import GenerationParams
from workbench.core.runs import Ledger, Stage, StageOutcome, StagePending, StageWork
from workbench.core.stats import Stats, compute_stats
from workbench.core.tiny import (
    TinySpec,
    base_texts,
    build_tiny_model,
    catalog_questions,
    default_corpus,
    domain_texts,
    pretrain_tiny,
)


@dataclass(frozen=True)
class Step:
    """A stage and the work that makes its outputs; the recipe runner decides whether the work runs."""

    stage: Stage
    work: StageWork


class TinyModelConfig(BaseModel):
    """The demo's two tiny models, with one tokenizer: a base (the stand-in for falcon-7b) trained on plain domain
    text, and an instruct model (for falcon-7b-instruct): the base trained further on the prompt formats."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Literal["falcon", "llama"] = "falcon"  # falcon: the architecture of falcon-7b
    layers: int = Field(2, ge=1)  # falcon-7b has 32
    hidden: int = Field(128, ge=8)  # falcon-7b has 4544
    heads: int = Field(4, ge=1)  # falcon-7b has 71
    vocab: int = Field(2000, ge=300)  # falcon-7b has 65,024
    train_steps: int = Field(400, ge=1)  # the base: pages, seed tasks, reading passages; ~95 s on 2 cores
    seq_len: int = Field(640, ge=16)  # the base's sequences: a catalog page with its question is ~600 tokens
    batch_size: int = Field(4, ge=1)
    instruct_steps: int = Field(450, ge=0)  # the instruct model, from the base: ~105 s; 0: no instruct model
    seed: int = 0  # weight initialisation and batch order


class SeedsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_field_bytes: int = 1_000_000  # longer text fields are quarantined
    allow_unknown_categories: bool = False  # only Dolly's eight categories


class CatalogConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_programmes: int = 12  # the course-advisor suite asks about a dozen programmes


# The demo's generation settings: shorter completions for a tiny model on a CPU, and wider sampling than the
# paper's (temperature 0.7, top-p 0.5), with which the tiny instruct model repeats its seed tasks (all 34 dropped
# by the ROUGE-L filter in one measured run).
DEMO_BOOTSTRAP = bootstrap.BootstrapConfig(num=40, rounds=4, sampling=bootstrap.PAPER_SAMPLING.model_copy(
    update={"max_new_tokens": 320, "temperature": 1.0, "top_p": 0.9}))
DEMO_INSTANCES = instances.InstancesConfig(sampling=GenerationParams(max_new_tokens=100, stop=("Task:",)))
DEMO_FROM_DOCS = from_docs.FromDocsConfig(num=8)


# The context is left out: questions about one catalog page share it, and it would make them near-duplicates.
DEMO_DEDUP = dedup.DedupConfig(fields=("instruction", "response"))
# detoxify when its weights were downloaded before (they cannot be downloaded here), else the offline scorer;
# the stage's manifest and the demo's output say which ran.
DEMO_SCREEN = screen.ScreenConfig(scorer="detoxify" if screen.cached_detoxify_weights() else "profanity-check")


class ReviewConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto", "manual"] = "auto"  # auto: three labelled demo reviewers; manual: people, resumable
    dataset: str = "demo-candidates"
    min_submitted: int = 2  # a record is complete once two reviewers submitted
    policy: Literal["majority", "unanimous", "any-discard"] = "majority"


# The demo's adapter: the tiny base, full precision on the CPU, eight epochs over the ~90 curated records (three
# left it at a loss near 1.6), with the advisor's system prompt as the course-advisor suite asks.
DEMO_FINETUNE = finetune.FinetuneConfig(quant="none", epochs=8, lr=1e-2, batch_size=4, max_length=1024,
                                        eval_split=0.1, grad_checkpointing=False, save_steps=50, logging_steps=5,
                                        system_prompt=True)


class EvalStageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    suites: tuple[str, ...] = ("course_advisor", "closed_qa")
    limit: int | None = None  # only the first N items of each suite (quick recipes and tests)
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
    plan: list[tuple[str, str, str]] = field(default_factory=list)  # dry run: (stage, run or skip, why)
    pending: str | None = None  # the stage the run stopped at, waiting (manual review), and what it waits for


def tiny_model_step(run_dir: Path, config: TinyModelConfig) -> Step:
    """model/: the tiny base; instruct/: the base trained further on the prompt formats (as falcon-7b-instruct is
    falcon-7b trained further)."""
    corpus = default_corpus()

    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        import shutil

        spec = TinySpec(**config.model_dump(include={"arch", "layers", "hidden", "heads", "vocab", "seed"}))
        base = build_tiny_model(stage.path("model"), spec, corpus)
        losses = {"base": pretrain_tiny(base, base_texts(), config.train_steps, seq_len=config.seq_len,
                                        batch_size=config.batch_size, seed=config.seed, aligned=True)}
        instruct = stage.path("instruct")
        shutil.rmtree(instruct, ignore_errors=True)
        if config.instruct_steps:
            shutil.copytree(base, instruct)
            asked = [q for p in load_catalog() for q, _ in catalog_questions(p)]
            texts = domain_texts(seed=config.seed, questions=catalog_questions, doc_questions=8, doc_listings=6,
                                 more_tasks=asked)
            losses["instruct"] = pretrain_tiny(instruct, texts, config.instruct_steps, seq_len=config.seq_len,
                                               batch_size=config.batch_size, seed=config.seed, aligned=True)
        atomic_write_text(stage.path("losses.json"), json.dumps(
            {name: [round(x, 4) for x in values] for name, values in losses.items()}) + "\n")
        parameters = json.loads((base / "tiny.json").read_text())["parameters"]
        counts = {"parameters": parameters, "train_steps": config.train_steps,
                  "first_loss_x100": round(losses["base"][0] * 100), "last_loss_x100": round(losses["base"][-1] * 100)}
        if "instruct" in losses:
            counts.update(instruct_steps=config.instruct_steps,
                          instruct_last_loss_x100=round(losses["instruct"][-1] * 100))
        return counts

    return Step(Stage(run_dir, "tiny-model", config, corpus), work)


def seeds_step(run_dir: Path, config: SeedsConfig, seeds: Path = SEED_TASKS) -> Step:
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        problems: list[Problem] = []
        records = load_records(seeds, problems, max_field_bytes=config.max_field_bytes,
                               allow_unknown_categories=config.allow_unknown_categories)
        write_records(stage.path("records.jsonl"), records)
        write_problems(stage.path("dropped.jsonl"), problems)
        stats = compute_stats(records)
        atomic_write_text(stage.path("stats.json"), json.dumps(stats.to_dict(), indent=2) + "\n")
        return {"in": len(records) + len(problems), "out": len(records), "quarantined": len(problems)}

    return Step(Stage(run_dir, "seeds", config, [seeds]), work)


def catalog_step(run_dir: Path, config: CatalogConfig, catalog_dir: Path = CATALOG_DIR) -> Step:
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

    return Step(Stage(run_dir, "catalog", config, [catalog_dir]), work)


def generation_step(run_dir: Path, name: str, config: BaseModel, inputs: list[Path], generator: BackendConfig,
                    generate: Callable) -> Step:
    """A generation stage: records.jsonl (kept) and dropped.jsonl (rejected, with reasons), resumable."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from workbench.core.backends import load_backend

        result = generate(load_backend(generator), stage.path("records.jsonl"), stage.path("dropped.jsonl"))
        ledger.counts.update({f"drop: {reason}": n for reason, n in result.reasons.items()})
        return {"kept": result.kept, "rejected": result.rejected, **result.usage}

    local = [Path(generator.model)] if Path(generator.model).exists() else []  # a hub id: its name is in the config
    return Step(Stage(run_dir, name, GenerationStageConfig(settings=config.model_dump(mode="json"),
                                                           generator=generator), [*inputs, *local]), work)


class GenerationStageConfig(BaseModel):
    """What decides a generation stage's output: its settings and the generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: dict
    generator: BackendConfig


def dedup_step(run_dir: Path, config: dedup.DedupConfig, candidates: list[Path], seed_file: Path) -> Step:
    """All generated candidates together, near-duplicates removed, also against the seed tasks."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        records = [r for path in candidates for r in load_records(path, [])]
        removed, dropped = [], []
        kept = write_records(stage.path("records.jsonl"),
                             dedup.run(records, config, ledger, load_records(seed_file, []), removed, dropped))
        write_records(stage.path("dropped.jsonl"), dropped)
        atomic_write_text(stage.path("clusters.jsonl"), "".join(json.dumps(line) + "\n" for line in removed))
        return {"in": len(records), "out": kept, "removed": len(dropped)}

    return Step(Stage(run_dir, "dedup", config, [*candidates, seed_file], frozenset({"workers"})), work)


def screen_step(run_dir: Path, config: screen.ScreenConfig, candidates: Path) -> Step:
    """Score the deduplicated candidates; pass and review go on, rejected ones are kept with their scores."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        rejected: list = []
        result = screen.ScreenResult(config.scorer)
        records = load_records(candidates, [])
        kept = write_records(stage.path("records.jsonl"),
                             screen.run(records, config, ledger, screen.load_scorer(config), rejected, result))
        write_records(stage.path("dropped.jsonl"), rejected)
        return {"in": len(records), "out": kept, **{f"route_{k}": v for k, v in sorted(result.counts.items())}}

    return Step(Stage(run_dir, "screen", config, [candidates], screen.SPEED_ONLY), work)


def review_step(run_dir: Path, config: ReviewConfig, candidates: Path,
                say: Callable[[str], None] = lambda text: None) -> Step:
    """Push the screened candidates to a local Argilla server, review them, pull the curated set back.

    auto: three clearly labelled demo reviewers answer through the REST API the UI uses, and the server stops.
    manual: the server keeps running for people; the stage ends as pending (the run stops, exit 0) until every
    pushed record has its `min_submitted` responses, and the next run pulls.
    """
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from annotation import demo_reviewer, review, server
        from annotation.agreement import agreement, to_dict
        from workbench.core.io import sha256_file

        data_dir = stage.path("argilla").resolve()
        served = server.serve(data_dir, port=server.free_port())  # a running server of this data dir is reused
        keep_running = False
        try:
            client = review.connect(served.api_url, served.credentials.api_key)
            records = load_records(candidates, [])
            marker = stage.path("pushed.json")
            digest = sha256_file(candidates)
            if not marker.exists() or json.loads(marker.read_text()).get("sha256") != digest:
                pushed = review.push(records, config.dataset, client=client, min_submitted=config.min_submitted)
                atomic_write_text(marker, json.dumps({"sha256": digest, "pushed": pushed.pushed}) + "\n")
            if config.mode == "manual":
                handle = review.get_dataset(client, config.dataset, server.DEFAULT_WORKSPACE)
                progress = review.dataset_progress(client, handle)
                if progress.get("completed", 0) < progress.get("total", 0):
                    keep_running = True
                    raise StagePending(
                        f"review: {progress.get('completed', 0)} of {progress.get('total', 0)} records complete at "
                        f"{served.api_url} (user {served.credentials.username}, password in "
                        f"{data_dir / 'credentials.json'}; add annotators with `workbench annotate users add NAME "
                        f"--data-dir {data_dir}`); run the same command again once they are done")
            else:
                demo_reviewer.review_all(client, config.dataset, server.DEFAULT_WORKSPACE, data_dir)
            raw = list(review.fetch(client, config.dataset))
            users = review.user_names(client)
        finally:
            if not keep_running:
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
        return {"pushed": len(records), "curated": len(pulled.curated), "corrected": corrected,
                "disputed": len(pulled.disputed), "discarded": len(pulled.discarded), "pending": pulled.pending,
                "problems": len(problems)}

    return Step(Stage(run_dir, "review", config, [candidates]), work)


class ContaminationGateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    suites: tuple[str, ...]
    check: dict  # pipelines.contamination.ContaminationConfig


def contamination_step(run_dir: Path, suites: tuple[str, ...], curated: Path) -> Step:
    """Before finetuning: the curated set against the eval suites; any contaminated item stops the run."""
    from eval_suites.registry import find_suite
    from pipelines.contamination import ContaminationConfig, check, load_eval_items, report

    config = ContaminationConfig()
    folders = [find_suite(s) for s in suites]

    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        items = [item for folder in folders for item in load_eval_items(folder, [])]
        findings = check(load_records(curated, []), items, config)
        atomic_write_text(stage.path("report.json"), report(str(curated), [str(f) for f in folders], len(items),
                                                            findings, config))
        if findings:
            raise WorkbenchError(f"contamination: {len(findings)} eval item(s) near-duplicate or share a 13-gram with "
                                 f"the curated set ({', '.join(f.item.id for f in findings[:5])}); see "
                                 f"{stage.path('report.json')}",
                                 hint="remove those records from the curated set (or the items from the suite) "
                                      "and run again")
        return {"items_checked": len(items), "contaminated": 0}

    gate = ContaminationGateConfig(suites=suites, check=config.model_dump())
    return Step(Stage(run_dir, "contamination", gate, [curated, *folders]), work)


def finetune_step(run_dir: Path, config: finetune.FinetuneConfig, curated: Path, base: BackendConfig) -> Step:
    """A LoRA adapter on the curated set, with its manifest and loss plot in the stage folder."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        import shutil

        from workbench.core.io import sha256_file

        records = load_records(curated, [])
        adapter = stage.path("adapter")
        shutil.rmtree(adapter, ignore_errors=True)  # a forced rerun starts over
        result = finetune.finetune(base.model, records, adapter, config, device=base.device,
                                   data_sha256=sha256_file(curated), data_path=str(curated.resolve()))
        m = result.manifest
        if m["dropped_too_long"]:
            ledger.counts["drop: longer than max_length"] += len(m["dropped_too_long"])
        losses = [p["loss"] for p in m["train_loss"]]
        return {"examples": m["train_examples"], "held_out": m["eval_examples"], "steps": m["steps"],
                "first_loss_x100": round(100 * losses[0]) if losses else 0,
                "last_loss_x100": round(100 * losses[-1]) if losses else 0}

    local = [Path(base.model)] if Path(base.model).exists() else []
    stage_config = FinetuneStageConfig(settings=config, base=base.model)
    return Step(Stage(run_dir, "finetune", stage_config, [curated, *local],
                      frozenset({f"settings.{k}" for k in finetune.SPEED_ONLY})), work)


class FinetuneStageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: finetune.FinetuneConfig
    base: str


def eval_step(run_dir: Path, name: str, label: str, config: EvalStageConfig, model: BackendConfig) -> Step:
    """Answer and score the suites with one model (a base, an instruct model, or a base with its adapter)."""
    from eval_suites.registry import find_suite

    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from eval_suites.runner import evaluate

        runs = evaluate(list(config.suites), model, stage.path("results"), name=label, batch_size=config.batch_size,
                        limit=config.limit)
        counts = {"items": sum(r.manifest["items"] for r in runs),
                  "generated": sum(r.manifest["cache"]["generated"] for r in runs)}
        for r in runs:
            f1 = r.scores.metrics.get("f1", {}).get("value")
            if f1 is not None:
                counts[f"{r.suite.name}_f1_x1000"] = round(1000 * f1)
        return counts

    suites = [find_suite(s) for s in config.suites]
    local = [Path(p) for p in (model.model, model.adapter) if p and Path(p).exists()]
    stage_config = EvalModelConfig(settings=config, model=model)
    return Step(Stage(run_dir, name, stage_config, [*local, *suites], frozenset({"settings.batch_size"})), work)


class EvalModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: EvalStageConfig
    model: BackendConfig


def report_step(run_dir: Path, config: ReportConfig, results: list[Path], judge: BackendConfig | None = None) -> Step:
    """Compare the evaluated models (the first is the baseline): report.html, summary.json and summary.md."""
    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from eval_suites.compare import compare, markdown, suite_items, write_report

        comparison = compare(results, resamples=config.bootstrap, seed=config.seed,
                             max_toxicity_rate=config.max_toxicity_rate)
        items = suite_items(comparison)
        if judge:
            from eval_suites.judge import judge_all

            comparison.summary["judge"] = judge_all(judge, comparison.models, comparison.suites, items,
                                                    config.bootstrap, config.seed)
        write_report(comparison, stage.path("report.html"), items)
        atomic_write_text(stage.path("summary.md"), markdown(comparison))
        contaminated = sum(len(c["contaminated"]) for per in comparison.summary["contamination"].values()
                           for c in per.values() if c and c.get("checked"))
        if comparison.toxicity_violations:
            raise WorkbenchError("; ".join(comparison.toxicity_violations),
                                 hint=f"the report is in {stage.path('report.html')}")
        return {"models": len(comparison.models), "suites": len(comparison.suites), "contaminated": contaminated}

    return Step(Stage(run_dir, "report", ReportStageConfig(settings=config, judge=judge), results), work)


class ReportStageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: ReportConfig
    judge: BackendConfig | None = None


def run_demo(runs_dir: str | Path = "runs", name: str = "demo", force: bool = False,
             on_stage: Callable[[str], None] | None = None, review: str = "auto",
             keep_server: bool = False) -> DemoResult:
    """The tiny recipe (the embedded defaults) in runs_dir/name: what `make demo` runs."""
    from workbench.recipe import Recipe, run_recipe

    recipe = Recipe().with_review(review)
    return run_recipe(recipe, runs_dir, name, force=force, on_stage=on_stage, keep_server=keep_server)

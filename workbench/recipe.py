"""Recipes: one YAML file naming every stage's settings, and `run_recipe`, which runs the loop in a run folder.

generate -> dedup -> screen -> review -> finetune -> eval -> report. Each stage writes a manifest and is skipped
while its config and inputs are unchanged, so changing one stage's settings reruns it and the stages after it.
`Recipe()` (no file) is the embedded tiny recipe that `workbench demo` runs; `recipes/course-advisor-tiny.yaml`
spells it out and `recipes/course-advisor.yaml` is the seed lecture's setup for a 24 GB GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from annotation.review import ReviewConfig
from eval_suites.registry import find_suite
from eval_suites.report import ReportConfig
from eval_suites.runner import EvalConfig
from pipelines import bootstrap, from_docs, instances, responses, screen
from pipelines.bootstrap import BootstrapConfig
from pipelines.dedup import DedupConfig
from pipelines.finetune import FinetuneConfig
from pipelines.from_docs import FromDocsConfig
from pipelines.instances import InstancesConfig
from pipelines.preferences import PairsConfig
from pipelines.responses import ResponsesConfig
from pipelines.screen import ScreenConfig
from workbench import steps
from workbench.core import locks
from workbench.core.backends import BackendConfig, api_bases
from workbench.core.catalog import CATALOG_DIR, SEED_TASKS
from workbench.core.config import build_config, load_yaml
from workbench.core.errors import ConfigError, InputError, WorkbenchError
from workbench.core.io import Problem, atomic_write_text, load_records
from workbench.core.models import GenerationParams
from workbench.core.prompts import ANSWER_STOPS
from workbench.core.runs import StageOutcome, StagePending, run_stage, save_run_state
from workbench.core.stats import Stats, compute_stats
from workbench.core.teaching import TinyModelConfig

TINY_MODELS = {"tiny": "model", "tiny-instruct": "instruct"}  # name in a recipe -> folder in tiny-model/
GROUPS = ("generate", "dedup", "screen", "review", "finetune", "eval", "report")

# The demo's settings (the embedded tiny recipe). Generation: shorter completions for a tiny model on a CPU, and wider
# sampling than the paper's (temperature 0.7, top-p 0.5), with which the tiny instruct model repeats its seed tasks
# (all 34 dropped by the ROUGE-L filter in one measured run).
DEMO_BOOTSTRAP = BootstrapConfig(num=40, rounds=4, sampling=bootstrap.PAPER_SAMPLING.model_copy(
    update={"max_new_tokens": 320, "temperature": 1.0, "top_p": 0.9}))
DEMO_INSTANCES = InstancesConfig(sampling=GenerationParams(max_new_tokens=100, stop=("Task:",)))
DEMO_FROM_DOCS = FromDocsConfig(num=8)
# The context is left out: questions about one catalog page share it, and it would make them near-duplicates.
DEMO_DEDUP = DedupConfig(fields=("instruction", "response"))
# The offline default (workbench.core.scorers.default_scorer_name): detoxify when its weights were downloaded before
# (they cannot be downloaded here), else profanity-check; the stage's manifest and the demo's output say which ran.
DEMO_SCREEN = ScreenConfig(scorer=screen.default_scorer_name())
# The demo's adapter: the tiny base, full precision on the CPU, eight epochs over the ~90 curated records (three
# left it at a loss near 1.6), with the advisor's system prompt as the course-advisor suite asks.
DEMO_FINETUNE = FinetuneConfig(quant="none", epochs=8, lr=1e-2, batch_size=4, max_length=1024, eval_split=0.1,
                               grad_checkpointing=False, save_steps=50, logging_steps=5, system_prompt=True)


# Preferences (recipes/course-advisor-preferences-tiny.yaml): three candidates per curated instruction (its own
# response and two samples of the generator), ranked by the demo reviewers; DPO on the pairs, on top of the SFT
# adapter, with the same system prompt as SFT so that both train on the same prompts.
DEMO_RESPONSES = ResponsesConfig(n=3, system_prompt=True, sampling=GenerationParams(
    max_new_tokens=160, temperature=0.9, top_p=0.95, stop=ANSWER_STOPS))
DEMO_DPO = FinetuneConfig(method="dpo", quant="none", epochs=1, lr=1e-3, beta=0.1, batch_size=4, max_length=1024,
                          eval_split=0.1, grad_checkpointing=False, save_steps=100, logging_steps=5)


class PreferenceSettings(BaseModel):
    """Beyond SFT: candidates to compare, ranked in review, preference pairs, and DPO on the SFT adapter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    responses: ResponsesConfig = DEMO_RESPONSES  # K candidates per curated instruction, from the generator
    review: ReviewConfig = ReviewConfig(dataset="demo-comparisons", compare=True)
    pairs: PairsConfig = PairsConfig(pairs="all", system_prompt=True)
    dpo: FinetuneConfig = DEMO_DPO


class TrainingProcesses(BaseModel):
    """Where finetuning (SFT and DPO) runs: in `processes` processes started by accelerate launch (one per GPU; the
    effective batch is processes x batch_size x grad_accum), or as its config file says (FSDP, DeepSpeed, several
    machines)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    processes: int = Field(1, ge=1)
    accelerate_config: str | None = None  # a file of `accelerate config`; its process count unless processes > 1


class ModelRef(BaseModel):
    """A model a stage uses: "tiny" and "tiny-instruct" are the run's own tiny base and instruct models (stage
    tiny-model); else a hub id or folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    backend: Literal["transformers", "openai"] = "transformers"
    quant: Literal["none", "8bit", "4bit"] = "none"
    api_base: str | list[str] | None = None  # openai backend: one server, or replicas sharing the requests
    concurrency: int = Field(4, ge=1)  # openai backend: requests in flight on each server
    device: str = "auto"

    def resolve(self, tiny_dir: Path, adapter: Path | None = None) -> BackendConfig:
        model = str(tiny_dir / TINY_MODELS[self.model]) if self.model in TINY_MODELS else self.model
        return BackendConfig(backend=self.backend, model=model, quant=self.quant, api_base=self.api_base,
                             concurrency=self.concurrency, device=self.device,
                             adapter=str(adapter) if adapter else None)


class Models(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: ModelRef = ModelRef(model="tiny-instruct")  # writes the candidates (target: falcon-7b-instruct)
    base: ModelRef = ModelRef(model="tiny")  # finetuned and evaluated (target: falcon-7b)
    instruct: ModelRef | None = ModelRef(model="tiny-instruct")  # also evaluated, beside base and finetuned


class GenerateSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seeds: str = "bundled"  # a record file, or the bundled course-advisor seeds
    documents: str = "bundled"  # a folder of pages (Markdown, text, HTML, PDF: workbench.core.pages), or "bundled"
    instructions: BootstrapConfig = DEMO_BOOTSTRAP
    instances: InstancesConfig = DEMO_INSTANCES
    from_docs: FromDocsConfig = DEMO_FROM_DOCS


class Stages(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generate: GenerateSettings = GenerateSettings()
    dedup: DedupConfig = DEMO_DEDUP
    screen: ScreenConfig = DEMO_SCREEN
    review: ReviewConfig = ReviewConfig()
    finetune: FinetuneConfig = DEMO_FINETUNE
    eval: EvalConfig = EvalConfig()
    report: ReportConfig = ReportConfig()
    judge: ModelRef | None = None  # pairwise LLM judge in the report
    preferences: PreferenceSettings | None = None  # rank candidates, DPO after SFT, the DPO model evaluated too
    # A suite drafted from the pages (generate.documents), reviewed in Argilla as its own dataset on the review's
    # server; the run evaluates on it first (before eval.suites) and trains on none of its questions.
    suite_review: ReviewConfig | None = None
    training: TrainingProcesses = TrainingProcesses()  # one process, or several through accelerate launch


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "course-advisor-tiny"
    description: str = "The embedded demo: a tiny Falcon trained on the bundled catalog runs the whole loop on a CPU."
    tiny: TinyModelConfig | None = TinyModelConfig()  # needed when a model is "tiny" or "tiny-instruct"
    models: Models = Models()
    stages: Stages = Stages()

    def with_review(self, mode: str) -> Recipe:
        """The same recipe with review `auto` or `manual` (the command line's --review), the rankings and the drafted
        suite included."""
        if mode not in ("auto", "manual"):
            raise InputError(f"--review: choose auto or manual, not {mode!r}")
        review = self.stages.review.model_copy(update={"mode": mode})
        changes: dict[str, Any] = {"review": review}
        if self.stages.preferences is not None:  # the rankings are a review too: people rank when people review
            compare = self.stages.preferences.review.model_copy(update={"mode": mode})
            changes["preferences"] = self.stages.preferences.model_copy(update={"review": compare})
        if self.stages.suite_review is not None:  # and the drafted suite's questions
            changes["suite_review"] = self.stages.suite_review.model_copy(update={"mode": mode})
        return self.model_copy(update={"stages": self.stages.model_copy(update=changes)})


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file, validated; mistakes are reported as `FILE: stages.dedup.threshold: reason`."""
    path = Path(path)
    values = load_yaml(path)
    if values is None:  # an empty file would silently plan the whole default recipe
        raise ConfigError(f"{path}: the recipe is empty",
                          hint="`workbench demo` runs the embedded defaults; recipes/course-advisor-tiny.yaml spells "
                               "them out to copy")
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of settings")
    recipe = build_config(Recipe, values, str(path))
    for suite in recipe.stages.eval.suites:
        try:
            find_suite(suite)
        except InputError as e:
            raise ConfigError(f"{path}: stages.eval.suites: {e.message}",
                              hint="a suite is a bundled name (workbench eval list) or a folder with suite.yaml"
                              ) from None
    used = {m.model for m in (recipe.models.generator, recipe.models.base, recipe.models.instruct,
                              recipe.stages.judge) if m is not None}
    prefs = recipe.stages.preferences
    if prefs is not None and (not prefs.review.compare or prefs.dpo.method != "dpo"):
        raise ConfigError(f"{path}: stages.preferences: review.compare must be true and dpo.method dpo")
    if prefs is not None and prefs.review.dataset == recipe.stages.review.dataset:
        raise ConfigError(f"{path}: stages.preferences.review.dataset: the comparisons need their own dataset, not "
                          f"the review's ({prefs.review.dataset!r})")
    suite_review = recipe.stages.suite_review
    if suite_review is not None and suite_review.compare:
        raise ConfigError(f"{path}: stages.suite_review.compare: a suite's questions are reviewed one by one, not "
                          "ranked")
    taken = {recipe.stages.review.dataset, *([prefs.review.dataset] if prefs is not None else [])}
    if suite_review is not None and suite_review.dataset in taken:
        raise ConfigError(f"{path}: stages.suite_review.dataset: the suite needs its own dataset, not "
                          f"{suite_review.dataset!r}")
    if used & set(TINY_MODELS) and recipe.tiny is None:
        raise ConfigError(f"{path}: tiny: a model is \"tiny\" but the recipe has no tiny section")
    if "tiny-instruct" in used and recipe.tiny is not None and not recipe.tiny.instruct_steps:
        raise ConfigError(f"{path}: tiny.instruct_steps: a model is \"tiny-instruct\", which needs instruct_steps > 0")
    return recipe


def _served(model: BackendConfig) -> str:
    servers = api_bases(model) if model.backend == "openai" else []
    return f" (on {len(servers)} replicas of {model.model})" if len(servers) > 1 else ""


def _processes(training: TrainingProcesses) -> str:
    if training.accelerate_config:
        return f"; accelerate launch with {training.accelerate_config}"
    return f"; {training.processes} processes" if training.processes > 1 else ""


def _path(value: str, bundled: Path) -> Path:
    return bundled if value == "bundled" else Path(value)


def bundled_names_not_in(pages: Path) -> tuple[str, ...]:
    """The bundled catalog's programme titles that a folder of pages does not name: what the bundled seed tasks must
    not teach a generator meant for those pages. An unreadable folder names nothing here (the catalog stage says
    why)."""
    from workbench.core.catalog import load_catalog
    from workbench.core.pages import read_pages

    try:
        text = " ".join(p.text for p in read_pages(pages)[0]).lower()
    except InputError:
        return ()
    return tuple(p.title for p in load_catalog() if p.title.lower() not in text)


def review_server_dir(run_dir: Path) -> Path:
    """The review stage's own Argilla server: its folder `argilla` (annotation.review's out["argilla"])."""
    return run_dir / "review" / "argilla"


@dataclass
class RunResult:
    """What a recipe run did: each stage's outcome, and what it left to show."""

    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)
    stats: Stats | None = None  # of the seed tasks
    problems: list[Problem] = field(default_factory=list)
    programmes: list[dict] = field(default_factory=list)
    report: Path | None = None  # report.html of the comparison
    argilla: object | None = None  # the review server left running (--keep-server): annotation.server.Served
    plan: list[tuple[str, str, str]] = field(default_factory=list)  # dry run: (stage, run, skip or missing, why)
    problems_ahead: list[str] = field(default_factory=list)  # dry run: what the run would meet (pages, the server)
    pending: str | None = None  # the stage the run stopped at, waiting (manual review), and what it waits for

    def stage_lines(self) -> list[str]:
        """The dry run's plan, or each stage's state, counts and reasons (then what the run waits for)."""
        if self.plan:
            return [f"Dry run of {self.run_dir}: nothing was run",
                    *(f"  {stage:<16} {WHAT_A_DRY_RUN_SAYS[action]}: {why}" for stage, action, why in self.plan),
                    *(f"Problem ahead: {line}" for line in self.problems_ahead)]
        lines = [line for outcome in self.outcomes for line in outcome.summary_lines()]
        return lines + ([f"Waiting: {self.pending}"] if self.pending else [])

    def closing_lines(self) -> list[str]:
        """After the seed tasks' tables: the catalog, the report's summary, the server left running, the folder."""
        lines = []
        if self.programmes and all(p["programming_required"] is not None for p in self.programmes):
            lines.append(f"Catalog: {len(self.programmes)} programmes, "
                         f"{sum(p['programming_required'] for p in self.programmes)} require programming")
        elif self.programmes:
            lines.append(f"Catalog: {len(self.programmes)} page(s), {sum(p['words'] for p in self.programmes):,} words")
        if self.report:
            lines += [self.report.with_name("summary.md").read_text(), f"Report: {self.report}"]
        if self.argilla:
            data_dir = review_server_dir(self.run_dir)
            lines.append(f"Argilla (kept running): {self.argilla.api_url} — user "
                         f"{self.argilla.credentials.username}, password in {data_dir / 'credentials.json'}; stop it "
                         f"with `workbench annotate stop --data-dir {data_dir}`")
        return lines + [f"Run folder: {self.run_dir}"]


def run_recipe(recipe: Recipe, runs_dir: str | Path = "runs", name: str = "demo", *, force: bool = False,
               from_stage: str | None = None, until: str | None = None, dry_run: bool = False,
               on_stage: Callable[[str], None] | None = None, keep_server: bool = False,
               allow_empty: bool = False) -> RunResult:
    """Run the recipe's stages in runs_dir/name; see the module doc. `dry_run` says what would run and why
    (in result.plan) and runs nothing. The run folder is locked while it runs: a second run of it at the same time
    is refused, naming the first one's PID."""
    options = dict(force=force, from_stage=from_stage, until=until, dry_run=dry_run, on_stage=on_stage,
                   keep_server=keep_server, allow_empty=allow_empty)
    if dry_run:
        return _run_recipe(recipe, runs_dir, name, **options)
    run_dir = Path(runs_dir) / name
    lock = locks.acquire(run_dir)
    try:
        save_run_state(run_dir, "running")
        try:
            result = _run_recipe(recipe, runs_dir, name, **options)
        except KeyboardInterrupt:
            save_run_state(run_dir, "interrupted")
            raise
        except Exception as e:
            save_run_state(run_dir, f"stopped: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}")
            raise
        save_run_state(run_dir, f"waiting: {result.pending}" if result.pending else
                       "complete" if until is None or until == GROUPS[-1] else f"complete up to {until}")
        return result
    finally:
        lock.release()


def _run_recipe(recipe: Recipe, runs_dir: str | Path, name: str, *, force: bool, from_stage: str | None,
                until: str | None, dry_run: bool, on_stage: Callable[[str], None] | None, keep_server: bool,
                allow_empty: bool) -> RunResult:
    for value in (from_stage, until):
        if value is not None and value not in GROUPS:
            raise InputError(f"unknown stage {value!r}: stages are {', '.join(GROUPS)}")
    first = GROUPS.index(from_stage) if from_stage else 0
    last = GROUPS.index(until) if until else len(GROUPS) - 1
    if first > last:
        raise InputError(f"--from {from_stage} comes after --until {until}: nothing would run",
                         hint=f"the stages run in this order: {', '.join(GROUPS)}")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # tiny models load in milliseconds
    result = RunResult(run_dir=Path(runs_dir) / name)
    say = on_stage or (lambda text: None)
    changed = False  # in a dry run: an earlier stage would run, so every later one would too

    def step(group: str, label: str, make: Callable[[], steps.Step]) -> StageOutcome | None:
        nonlocal changed
        index = GROUPS.index(group)
        if index > last:
            return None
        if dry_run:
            try:
                planned = make()
            except InputError:  # its inputs do not exist yet
                planned = None
            if index < first:  # before --from: used as it is, whatever --force says
                done = planned is not None and planned.stage.is_done()
                result.plan.append((planned.stage.name if planned else label, "skip" if done else "missing",
                                    f"before --from {from_stage}: used as it is" if done else
                                    f"before --from {from_stage}, and not run with these settings: the run stops"))
                return None
            altered = planned.stage.changed() if planned is not None and planned.stage.is_done() else []
            if planned is not None and not changed and planned.stage.is_done() and not force and not altered:
                result.plan.append((planned.stage.name, "skip", "unchanged"))
                return None
            if planned is None or changed:
                why = "an earlier stage runs first" if changed else "its inputs are not made yet"
            else:
                why = "forced" if force and planned.stage.is_done() else \
                    f"its outputs changed since it finished ({'; '.join(altered)})" if altered else \
                    "not run yet" if planned.stage.manifest() is None else "its config or inputs changed"
            changed = True
            result.plan.append((planned.stage.name if planned else label, "run", why))
            return None
        planned = make()
        if index < first:  # before --from: use what is there
            if not planned.stage.is_done():
                raise InputError(f"stage {planned.stage.name} ({group}) has not run with these settings",
                                 hint=f"run without --from first, or --from {group}")
            altered = planned.stage.changed()
            if altered:
                raise InputError(f"stage {planned.stage.name} ({group}): its outputs changed since it finished "
                                 f"({'; '.join(altered)})", hint=f"run without --from (it is done again), or "
                                                                 f"--from {group}")
            outcome = StageOutcome(planned.stage, True, planned.stage.manifest() or {})
        else:
            say(label)
            outcome = run_stage(planned.stage, planned.call, force=force, allow_empty=allow_empty)
        result.outcomes.append(outcome)
        return outcome

    run_dir = result.run_dir
    settings, models, g = recipe.stages, recipe.models, recipe.stages.generate
    seeds_path = _path(g.seeds, SEED_TASKS)
    documents = _path(g.documents, CATALOG_DIR)
    tiny_dir = run_dir / "tiny-model"
    seed_file = run_dir / "seeds" / "records.jsonl"
    made = run_dir / "instructions" / "records.jsonl"
    candidates = [run_dir / "instances" / "records.jsonl", run_dir / "from-docs" / "records.jsonl"]
    curated = run_dir / "review" / "records.jsonl"
    generator, base = models.generator.resolve(tiny_dir), models.base.resolve(tiny_dir)
    evaluated = [("eval-base", "base", base)]
    if models.instruct is not None:
        evaluated.append(("eval-instruct", "instruct", models.instruct.resolve(tiny_dir)))
    evaluated.append(("eval-finetuned", "finetuned", models.base.resolve(tiny_dir, run_dir / "finetune" / "adapter")))
    prefs = settings.preferences
    sft_adapter, ranked, pairs = run_dir / "finetune" / "adapter", run_dir / "compare" / "records.jsonl", \
        run_dir / "pairs" / "pairs.jsonl"
    training = settings.training
    launch = {"processes": training.processes,
              "accelerate_config": Path(training.accelerate_config) if training.accelerate_config else None}
    if prefs is not None:
        evaluated.append(("eval-dpo", "finetuned+dpo", models.base.resolve(tiny_dir, run_dir / "dpo" / "adapter")))
    own_pages = None if g.documents == "bundled" else documents
    suite_dir, drafted = run_dir / "suite", run_dir / "suite-draft" / "records.jsonl"
    suite_review = settings.suite_review
    suites = ((str(suite_dir),) if suite_review is not None else ()) + settings.eval.suites
    eval_settings = settings.eval.model_copy(update={"suites": suites})
    trained = run_dir / "holdout" / "records.jsonl"  # the curated set without the suites' questions
    waiting: list[str] = []  # manual reviews waiting for people: both datasets are pushed before the run stops

    def reviewed(label: str, make: Callable[[], steps.Step]) -> None:
        try:
            step("review", label, make)
        except StagePending as pending:
            waiting.append(pending.message)

    seeds_config = steps.SeedsConfig(leave_out_names=bundled_names_not_in(documents)
                                     if own_pages is not None and g.seeds == "bundled" else ())
    try:
        seeds = step("generate", "seeds", lambda: steps.seeds(run_dir, seeds_config, seeds_path))
        step("generate", "catalog", lambda: steps.catalog(run_dir, steps.CatalogConfig(), documents))
        if suite_review is not None:
            step("generate", "suite-draft (eval questions drafted from the pages)",
                 lambda: steps.suite_draft(run_dir, documents))
        if recipe.tiny is not None:  # the pair reads the recipe's own pages when it has them
            step("generate", "tiny-model (training a tiny Falcon on "
                 + ("the bundled text)" if own_pages is None else f"the pages in {own_pages} and the seeds)"),
                 lambda: steps.tiny_models(run_dir, recipe.tiny, own_pages, say=say,
                                           seed_file=seed_file if own_pages is not None else None,
                                           suites=((drafted,) if suite_review is not None else ())
                                           + settings.eval.suites))
        step("generate", f"instructions{_served(generator)}", lambda: steps.generation(
            run_dir, "instructions", g.instructions, [seed_file], generator,
            lambda backend, out, again: bootstrap.run(backend, seed_file, g.instructions, out, again), force))
        step("generate", "instances", lambda: steps.generation(
            run_dir, "instances", g.instances, [made, seed_file], generator,
            lambda backend, out, again: instances.run(backend, made, seed_file, g.instances, out, again), force))
        step("generate", "from-docs", lambda: steps.generation(
            run_dir, "from-docs", g.from_docs, [documents], generator,
            lambda backend, out, again: from_docs.run(backend, documents, g.from_docs, out, again), force))
        step("dedup", "dedup", lambda: steps.dedup(run_dir, settings.dedup, candidates, seed_file))
        step("screen", f"screen (scorer: {settings.screen.scorer})",
             lambda: steps.screen(run_dir, settings.screen, run_dir / "dedup" / "records.jsonl"))
        reviewed(f"review (a local Argilla server; {settings.review.mode} review)",
                 lambda: steps.review(run_dir, settings.review, run_dir / "screen" / "records.jsonl",
                                      say=lambda text: say(f"review: {text}")))
        if suite_review is not None:
            reviewed(f"suite-review (the drafted questions, dataset {suite_review.dataset}; {suite_review.mode} "
                     "review)", lambda: steps.suite_review(run_dir, suite_review, drafted, review_server_dir(run_dir),
                                                           say=lambda text: say(f"suite-review: {text}")))
        if waiting:
            raise StagePending("; ".join(waiting))
        if suite_review is not None:
            step("review", "suite (the reviewed questions as an eval suite)",
                 lambda: steps.suite(run_dir, recipe.name, run_dir / "suite-review" / "records.jsonl"))
        step("review", "holdout (the curated set without the suites' questions)",
             lambda: steps.holdout(run_dir, suites, curated))
        if prefs is not None:
            step("review", f"responses ({prefs.responses.n} candidates per curated instruction)",
                 lambda: steps.generation(
                     run_dir, "responses", prefs.responses, [trained], generator,
                     lambda backend, out, again: responses.run([backend], trained, prefs.responses, out, again), force))
            step("review", f"compare (the candidates ranked; {prefs.review.mode} review)",
                 lambda: steps.review(run_dir, prefs.review, run_dir / "responses" / "records.jsonl",
                                      say=lambda text: say(f"compare: {text}"), name="compare"))
            step("review", f"pairs (preference pairs from the rankings, {prefs.pairs.pairs})",
                 lambda: steps.pairs(run_dir, prefs.pairs, ranked))
        step("finetune", "contamination (what finetuning reads, against the eval suites)",
             lambda: steps.contamination_gate(run_dir, suites, trained))
        step("finetune", f"finetune (a LoRA adapter on the curated set{_processes(settings.training)})",
             lambda: steps.finetune(run_dir, settings.finetune, trained, base, **launch))
        if prefs is not None:
            step("finetune", f"dpo (DPO on the pairs, on top of the SFT adapter{_processes(settings.training)})",
                 lambda: steps.finetune(run_dir, prefs.dpo, pairs, base, name="dpo", ref_adapter=sft_adapter,
                                        **launch))
        for stage_name, label, model in evaluated:
            step("eval", f"{stage_name} ({label} on {', '.join(Path(s).name for s in suites)})",
                 lambda stage_name=stage_name, label=label, model=model: steps.evaluation(
                     run_dir, stage_name, label, eval_settings, model))
        judge = settings.judge.resolve(tiny_dir) if settings.judge else None
        report = step("report", "report (bootstrap CIs, paired differences, answers side by side)",
                      lambda: steps.report(run_dir, settings.report,
                                           [run_dir / s / "results" for s, _, _ in evaluated], judge, suites))
    except StagePending as pending:
        result.pending = pending.message
        return result
    if dry_run:
        result.problems_ahead = problems_ahead(recipe, documents, result.plan)
        return result
    if seeds is not None:
        result.stats = compute_stats(load_records(seed_file, result.problems))
    result.programmes = steps.programmes(run_dir)
    if report is not None:
        result.report = report.stage.path("report.html")
    if keep_server and review_server_dir(run_dir).is_dir():  # the review stage stops its server: restart it
        from annotation import server

        say("argilla (keeping the review server running)")
        result.argilla = server.serve(review_server_dir(run_dir).resolve(), port=server.free_port())
    return result


WHAT_A_DRY_RUN_SAYS = {"run": "would run", "skip": "skipped", "missing": "missing"}


def problems_ahead(recipe: Recipe, documents: Path, plan: list[tuple[str, str, str]]) -> list[str]:
    """What a run would meet that a dry run can see: pages that cannot be read (the run leaves them out), and a
    review without argilla-server's environment (a bad recipe, a missing suite or pages folder fail load_recipe or
    the dry run itself, with their own message)."""
    from annotation import server
    from workbench.core.pages import read_pages

    found: list[str] = []
    if recipe.stages.generate.documents != "bundled":
        try:
            found += [f"this page cannot be read and will be left out: {line}" for line in read_pages(documents)[1]]
        except InputError as e:
            found.append(f"pages: {e.message}")
    found += [f"stage {stage}: {why}" for stage, action, why in plan if action == "missing"]
    if any(stage.startswith(("review", "compare")) and action == "run" for stage, action, _ in plan):
        try:
            server.server_python()
        except WorkbenchError as e:
            found.append(f"review: {e.message}; {e.hint}")
    return found


def recipe_yaml(recipe: Recipe) -> str:
    """A recipe as YAML (every setting spelled out)."""
    data: dict[str, Any] = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, width=110)


# What `workbench init` writes for the real models: the seed lecture's setup on one 24 GB GPU
# (recipes/course-advisor.yaml).
FALCON = Models(generator=ModelRef(model="tiiuae/falcon-7b-instruct", quant="8bit"),
                base=ModelRef(model="tiiuae/falcon-7b", quant="8bit"),
                instruct=ModelRef(model="tiiuae/falcon-7b-instruct", quant="8bit"))


@dataclass
class Started:
    """What `workbench init` found and wrote."""

    recipe_file: Path
    pages: list  # workbench.core.pages.Page
    unreadable: list[str]
    suite: Path | None
    tiny: bool

    def summary_lines(self, shown: int = 20) -> list[str]:
        words = sum(p.words for p in self.pages)
        lines = [f"Found {len(self.pages)} page(s), {words:,} words:"]
        lines += [f"  {p.name}  ({p.path.name}, {p.words:,} words)" for p in self.pages[:shown]]
        lines += [f"  ... and {len(self.pages) - shown} more"] if len(self.pages) > shown else []
        lines += [f"Left out (cannot be read): {line}" for line in self.unreadable]
        models = "the tiny pair, trained here on these pages (offline, CPU)" if self.tiny else \
            "falcon-7b-instruct generates, falcon-7b is finetuned (8-bit, one GPU with 24 GB)"
        lines.append(f"Wrote {self.recipe_file}: {models}; evaluated on "
                     + (f"your suite {self.suite} and closed_qa" if self.suite else
                        "questions drafted from these pages and reviewed in Argilla ("
                        + ("by the demo reviewers: set stages.suite_review.mode to manual to review them yourself"
                           if self.tiny else "by you and your annotators, before finetuning")
                        + "), and closed_qa"))
        lines.append(f"Run it: workbench run {self.recipe_file}   (add --dry-run first to see the plan)")
        return lines


def start_recipe(directory: str | Path, pages: str | Path, *, suite: str | Path | None = None, tiny: bool = False,
                 force: bool = False) -> Started:
    """Write DIRECTORY/recipe.yaml for a folder of pages: the real models by default, the offline tiny pair (which
    reads these pages) with `tiny`; evaluated on `suite` (a folder in the suite format) when given. The pages are
    read first, so that an unreadable folder or suite is named before anything is written."""
    from workbench.core.pages import read_pages

    directory, pages = Path(directory), Path(pages).resolve()
    if pages in (directory.resolve(), *directory.resolve().parents):
        raise InputError(f"{directory}: is the pages folder (or inside it): the recipe would be written among the "
                         "pages", hint="give init a folder of its own, e.g. my-advisor")
    found, unreadable = read_pages(pages)
    suites: tuple[str, ...] = ("closed_qa",)
    if suite is not None:
        suite = Path(suite).resolve()
        find_suite(str(suite))  # a missing folder or a bad suite.yaml is named now
        suites = (str(suite), "closed_qa")
    target = directory / "recipe.yaml"
    if target.exists() and not force:
        raise InputError(f"{target}: a recipe is already there", hint="pass --force to write over it")
    name = directory.resolve().name or "my-advisor"
    base = Recipe() if tiny else Recipe(tiny=None, models=FALCON)
    stages = base.stages.model_copy(update={
        "generate": base.stages.generate.model_copy(update={"documents": str(pages)}),
        "review": base.stages.review.model_copy(update={"mode": "auto" if tiny else "manual", "dataset": name}),
        "eval": base.stages.eval.model_copy(update={"suites": suites}),
        # Without a suite of their own: one drafted from the pages, reviewed as its own dataset.
        "suite_review": None if suite is not None else ReviewConfig(mode="auto" if tiny else "manual",
                                                                    dataset=f"{name}-suite"),
        **({} if tiny else {"finetune": FinetuneConfig(quant="8bit", system_prompt=True),
                            "screen": ScreenConfig(scorer="detoxify")})})
    recipe = base.model_copy(update={
        "name": name, "stages": stages,
        "description": f"A course advisor for the pages in {pages}"
                       + (" (the offline tiny pair, trained on them)" if tiny else " (falcon-7b on one GPU)")})
    directory.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by `workbench init {directory} --pages {pages}`" + (" --tiny" if tiny else "")
              + (f" --suite {suite}" if suite else "") + f"\n# Run it: workbench run {target}\n")
    atomic_write_text(target, header + recipe_yaml(recipe))
    return Started(target, found, unreadable, suite, tiny)

"""Recipes: one YAML file naming every stage's settings, and `run_recipe`, which runs the loop in a run folder.

generate -> dedup -> screen -> review -> finetune -> eval -> report. Each stage writes a manifest and is skipped
while its config and inputs are unchanged, so changing one stage's settings reruns it and the stages after it.
`Recipe()` (no file) is the embedded tiny recipe that `workbench demo` runs; `recipes/course-advisor-tiny.yaml`
spells it out and `recipes/course-advisor.yaml` is the seed lecture's setup for a 24 GB GPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

# Aliases: the recipe's sections are named like the stage modules.
from pipelines import bootstrap as bootstrap_stage
from pipelines import dedup as dedup_stage
from pipelines import finetune as finetune_stage
from pipelines import from_docs as from_docs_stage
from pipelines import instances as instances_stage
from pipelines import screen as screen_stage
from workbench import demo
from workbench.core.backends import BackendConfig
from workbench.core.catalog import CATALOG_DIR, SEED_TASKS
from workbench.core.config import build_config
from workbench.core.errors import ConfigError, InputError
from workbench.core.io import load_records
from workbench.core.runs import StageOutcome, StagePending, run_stage
from workbench.core.stats import compute_stats

TINY_MODELS = {"tiny": "model", "tiny-instruct": "instruct"}  # name in a recipe -> folder in tiny-model/
GROUPS = ("generate", "dedup", "screen", "review", "finetune", "eval", "report")


class ModelRef(BaseModel):
    """A model a stage uses: "tiny" and "tiny-instruct" are the run's own tiny base and instruct models (stage
    tiny-model); else a hub id or folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    backend: Literal["transformers", "openai"] = "transformers"
    quant: Literal["none", "8bit", "4bit"] = "none"
    api_base: str | None = None  # openai backend
    device: str = "auto"

    def resolve(self, tiny_dir: Path, adapter: Path | None = None) -> BackendConfig:
        model = str(tiny_dir / TINY_MODELS[self.model]) if self.model in TINY_MODELS else self.model
        return BackendConfig(backend=self.backend, model=model, quant=self.quant, api_base=self.api_base,
                             device=self.device, adapter=str(adapter) if adapter else None)


class Models(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: ModelRef = ModelRef(model="tiny-instruct")  # writes the candidates (target: falcon-7b-instruct)
    base: ModelRef = ModelRef(model="tiny")  # finetuned and evaluated (target: falcon-7b)
    instruct: ModelRef | None = ModelRef(model="tiny-instruct")  # also evaluated, beside base and finetuned


class GenerateSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seeds: str = "bundled"  # a record file, or the bundled course-advisor seeds
    documents: str = "bundled"  # a catalog folder (*.md programme pages), or the bundled catalog
    instructions: bootstrap_stage.BootstrapConfig = demo.DEMO_BOOTSTRAP
    instances: instances_stage.InstancesConfig = demo.DEMO_INSTANCES
    from_docs: from_docs_stage.FromDocsConfig = demo.DEMO_FROM_DOCS


class Stages(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generate: GenerateSettings = GenerateSettings()
    dedup: dedup_stage.DedupConfig = demo.DEMO_DEDUP
    screen: screen_stage.ScreenConfig = demo.DEMO_SCREEN
    review: demo.ReviewConfig = demo.ReviewConfig()
    finetune: finetune_stage.FinetuneConfig = demo.DEMO_FINETUNE
    eval: demo.EvalStageConfig = demo.DEMO_EVAL
    report: demo.ReportConfig = demo.DEMO_REPORT
    judge: ModelRef | None = None  # pairwise LLM judge in the report


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "course-advisor-tiny"
    description: str = "The embedded demo: a tiny Falcon trained on the bundled catalog runs the whole loop on a CPU."
    tiny: demo.TinyModelConfig | None = demo.TinyModelConfig()  # needed when a model is "tiny" or "tiny-instruct"
    models: Models = Models()
    stages: Stages = Stages()

    def with_review(self, mode: str) -> Recipe:
        """The same recipe with review `auto` or `manual` (the command line's --review)."""
        if mode not in ("auto", "manual"):
            raise InputError(f"--review: choose auto or manual, not {mode!r}")
        review = self.stages.review.model_copy(update={"mode": mode})
        return self.model_copy(update={"stages": self.stages.model_copy(update={"review": review})})


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file, validated; mistakes are reported as `FILE: stages.dedup.threshold: reason`."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}:{(mark.line + 1) if mark else 1}: invalid YAML ({getattr(e, 'problem', e)})") \
            from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of settings")
    recipe = build_config(Recipe, values, str(path))
    used = {m.model for m in (recipe.models.generator, recipe.models.base, recipe.models.instruct,
                              recipe.stages.judge) if m is not None}
    if used & set(TINY_MODELS) and recipe.tiny is None:
        raise ConfigError(f"{path}: tiny: a model is \"tiny\" but the recipe has no tiny section")
    if "tiny-instruct" in used and recipe.tiny is not None and not recipe.tiny.instruct_steps:
        raise ConfigError(f"{path}: tiny.instruct_steps: a model is \"tiny-instruct\", which needs instruct_steps > 0")
    return recipe


def _path(value: str, bundled: Path) -> Path:
    return bundled if value == "bundled" else Path(value)


def run_recipe(recipe: Recipe, runs_dir: str | Path = "runs", name: str = "demo", *, force: bool = False,
               from_stage: str | None = None, until: str | None = None, dry_run: bool = False,
               on_stage: Callable[[str], None] | None = None, keep_server: bool = False) -> demo.DemoResult:
    """Run the recipe's stages in runs_dir/name; see the module doc. `dry_run` says what would run and why
    (in result.plan) and runs nothing."""
    for value in (from_stage, until):
        if value is not None and value not in GROUPS:
            raise InputError(f"unknown stage {value!r}: stages are {', '.join(GROUPS)}")
    first = GROUPS.index(from_stage) if from_stage else 0
    last = GROUPS.index(until) if until else len(GROUPS) - 1
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # tiny models load in milliseconds
    result = demo.DemoResult(run_dir=Path(runs_dir) / name)
    result.plan = []
    say = on_stage or (lambda text: None)
    changed = False  # in a dry run: an earlier stage would run, so every later one would too

    def step(group: str, label: str, make: Callable[[], demo.Step]) -> StageOutcome | None:
        nonlocal changed
        index = GROUPS.index(group)
        if dry_run:
            if index > last:
                return None
            try:
                planned = make()
            except InputError:  # its inputs do not exist yet
                planned = None
            if planned is None or changed:
                why = "an earlier stage runs first" if changed else "its inputs are not made yet"
            elif planned.stage.is_done() and not force:
                result.plan.append((planned.stage.name, "skip", "unchanged"))
                return None
            else:
                manifest = planned.stage.manifest()
                why = "forced" if force and planned.stage.is_done() else \
                    "not run yet" if manifest is None else "its config or inputs changed"
            changed = True
            result.plan.append((planned.stage.name if planned else label, "run", why))
            return None
        if index > last:
            return None
        planned = make()
        if index < first:  # before --from: use what is there
            if not planned.stage.is_done():
                raise InputError(f"stage {planned.stage.name} ({group}) has not run with these settings",
                                 hint=f"run without --from first, or --from {group}")
            outcome = StageOutcome(planned.stage, True, planned.stage.manifest() or {})
        else:
            say(label)
            outcome = run_stage(planned.stage, planned.work, force=force)
        result.outcomes.append(outcome)
        return outcome

    run_dir = result.run_dir
    settings = recipe.stages
    seeds_path = _path(settings.generate.seeds, SEED_TASKS)
    documents = _path(settings.generate.documents, CATALOG_DIR)
    tiny_dir = run_dir / "tiny-model"
    models = recipe.models
    try:
        seeds = step("generate", "seeds", lambda: demo.seeds_step(run_dir, demo.SeedsConfig(), seeds_path))
        step("generate", "catalog", lambda: demo.catalog_step(run_dir, demo.CatalogConfig(), documents))
        if recipe.tiny is not None:
            step("generate", "tiny-model (training a tiny Falcon on the bundled text)",
                 lambda: demo.tiny_model_step(run_dir, recipe.tiny))
        seed_file = run_dir / "seeds" / "records.jsonl"
        generator = models.generator.resolve(tiny_dir)
        g = settings.generate

        def seed_records():
            return load_records(seed_file, [])

        step("generate", "instructions", lambda: demo.generation_step(
            run_dir, "instructions", g.instructions, [seed_file], generator,
            lambda m, out, rej: bootstrap_stage.run(m, seed_records(), g.instructions, out, rej, force)))
        made = run_dir / "instructions" / "records.jsonl"
        step("generate", "instances", lambda: demo.generation_step(
            run_dir, "instances", g.instances, [made, seed_file], generator,
            lambda m, out, rej: instances_stage.run(m, load_records(made, []), seed_records(), g.instances, out, rej,
                                              force)))
        step("generate", "from-docs", lambda: demo.generation_step(
            run_dir, "from-docs", g.from_docs, [documents], generator,
            lambda m, out, rej: from_docs_stage.run(m, documents, g.from_docs, out, rej, force)))
        candidates = [run_dir / "instances" / "records.jsonl", run_dir / "from-docs" / "records.jsonl"]
        step("dedup", "dedup", lambda: demo.dedup_step(run_dir, settings.dedup, candidates, seed_file))
        step("screen", f"screen (scorer: {settings.screen.scorer})",
             lambda: demo.screen_step(run_dir, settings.screen, run_dir / "dedup" / "records.jsonl"))
        step("review", f"review (a local Argilla server; {settings.review.mode} review)",
             lambda: demo.review_step(run_dir, settings.review, run_dir / "screen" / "records.jsonl",
                                      say=lambda text: say(f"review: {text}")))
        curated = run_dir / "review" / "records.jsonl"
        step("finetune", "contamination (the curated set against the eval suites)",
             lambda: demo.contamination_step(run_dir, settings.eval.suites, curated))
        base = models.base.resolve(tiny_dir)
        step("finetune", "finetune (a LoRA adapter on the curated set)",
             lambda: demo.finetune_step(run_dir, settings.finetune, curated, base))
        evaluated = [("eval-base", "base", base)]
        if models.instruct is not None:
            evaluated.append(("eval-instruct", "instruct", models.instruct.resolve(tiny_dir)))
        evaluated.append(("eval-finetuned", "finetuned",
                          models.base.resolve(tiny_dir, run_dir / "finetune" / "adapter")))
        for stage_name, label, model in evaluated:
            step("eval", f"{stage_name} ({label} on {', '.join(settings.eval.suites)})",
                 lambda stage_name=stage_name, label=label, model=model: demo.eval_step(
                     run_dir, stage_name, label, settings.eval, model))
        judge = settings.judge.resolve(tiny_dir) if settings.judge else None
        report = step("report", "report (bootstrap CIs, paired differences, answers side by side)",
                      lambda: demo.report_step(run_dir, settings.report,
                                               [run_dir / s / "results" for s, _, _ in evaluated], judge))
    except StagePending as pending:
        result.pending = pending.message
        return result
    if dry_run:
        return result
    if seeds is not None:
        result.stats = compute_stats(load_records(seed_file, result.problems))
    programmes = run_dir / "catalog" / "programmes.json"
    result.programmes = json.loads(programmes.read_text()) if programmes.exists() else []
    if report is not None:
        result.report = report.stage.path("report.html")
    if keep_server and (run_dir / "review" / "argilla").is_dir():  # the review stage stops its server: restart it
        from annotation import server

        say("argilla (keeping the review server running)")
        result.argilla = server.serve((run_dir / "review" / "argilla").resolve(), port=server.free_port())
    return result


def recipe_yaml(recipe: Recipe) -> str:
    """A recipe as YAML (every setting spelled out)."""
    data: dict[str, Any] = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, width=110)

"""The recipe's stages as steps: for each, the Stage (its folder, and the config and inputs that decide whether it
must run again) and the call of that stage's one entry, with the stage folder as where it writes. The CLI calls the
same entries with the files a user names. `workbench.recipe.run_recipe` decides which steps run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from annotation import review as review_stage
from annotation.mapping import SUITE_GUIDELINES
from annotation.questions import SUITE_QUESTIONS
from eval_suites import draft as draft_stage
from eval_suites import report as report_stage
from eval_suites import runner as eval_stage
from eval_suites.contamination import QuestionIndex
from eval_suites.registry import find_suite, load_suite
from pipelines import contamination as contamination_stage
from pipelines import dedup as dedup_stage
from pipelines import finetune as finetune_stage
from pipelines import holdout as holdout_stage
from pipelines import preferences as pairs_stage
from pipelines import screen as screen_stage
from workbench.core import teaching
from workbench.core.backends import BackendConfig, load_backend
from workbench.core.errors import InputError
from workbench.core.io import Problem, atomic_write_json, load_records, write_records
from workbench.core.pages import read_pages
from workbench.core.runs import Outputs, Stage, StepResult
from workbench.core.stats import compute_stats


@dataclass(frozen=True)
class Step:
    """A stage and the call of its entry; the recipe runner decides whether the call runs."""

    stage: Stage
    call: Callable[[Outputs], StepResult]


class SeedsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_field_bytes: int = 1_000_000  # longer text fields are quarantined
    allow_unknown_categories: bool = False  # only Dolly's eight categories
    # Programmes the seed tasks must not name: the bundled catalog's, when a recipe brings its own pages (a seed
    # naming one would teach the generator a university that is not theirs)
    leave_out_names: tuple[str, ...] = ()


class CatalogConfig(BaseModel):
    """The pages as they come (workbench.core.pages): any number, no header key required."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class GenerationStageConfig(BaseModel):
    """What decides a generation stage's output: its settings and the generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: dict
    generator: BackendConfig


class FinetuneStageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: finetune_stage.FinetuneConfig
    base: str
    ref_adapter: str | None = None  # dpo: the SFT adapter it starts from (its files are an input)
    processes: int = 1  # several: the effective batch, and so what is learned, changes


class SuiteDraftConfig(BaseModel):
    """A suite drafted from the pages (`eval_suites.draft`): half of what each page answers, and what it does not."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ContaminationGateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    suites: tuple[str, ...]
    check: contamination_stage.ContaminationConfig


def _local(*names: str | None) -> list[Path]:
    """The ones that are files or folders here (a hub id is in the config by name, not hashed)."""
    return [Path(n) for n in names if n and Path(n).exists()]


def _names_one_of(record, names: tuple[str, ...], ledger) -> bool:
    """Drop (through the ledger) a seed task that names one of NAMES."""
    text = f"{record.instruction} {record.context} {record.response}".lower()
    named = next((name for name in names if name.lower() in text), None)
    if named:
        ledger.drop(record, "names a programme of the bundled catalog, not of your pages", {"name": named})
    return named is not None


def seeds(run_dir: Path, config: SeedsConfig, path: Path) -> Step:
    """The seed tasks checked: valid ones in records.jsonl, bad lines quarantined, statistics in stats.json."""
    def call(out: Outputs) -> StepResult:
        ledger = out.start(config, [path], drops=bool(config.leave_out_names))
        problems: list[Problem] = []
        records = load_records(path, problems, max_field_bytes=config.max_field_bytes,
                               allow_unknown_categories=config.allow_unknown_categories)
        read = len(records)
        if config.leave_out_names:
            records = [r for r in records if not _names_one_of(r, config.leave_out_names, ledger)]
        write_records(out["records.jsonl"], records)
        atomic_write_json(out["stats.json"], compute_stats(records).to_dict())
        counts = {"in": read + len(problems), "out": len(records), "quarantined": len(problems)}
        return out.finish(ledger, counts, problems)

    return Step(Stage(run_dir, "seeds", config, [path]), call)


def catalog(run_dir: Path, config: CatalogConfig, folder: Path, say: Callable[[str], None] = lambda text: None
            ) -> Step:
    """The pages read (Markdown, text, HTML, PDF): programmes.json lists them; a page that cannot be read is named
    and left out, the others go on."""
    def call(out: Outputs) -> StepResult:
        ledger = out.start(config, [folder], drops=False)
        pages, unreadable = read_pages(folder)
        for line in unreadable:
            say(f"Warning: page left out: {line}")
        listed = [{"slug": p.slug, "name": p.name, "words": p.words,
                   "programming_required": None if "programming_required" not in p.header
                   else bool(p.header["programming_required"]),
                   "language": p.header.get("language"), "path": p.path.name} for p in pages]
        atomic_write_json(out["programmes.json"], listed)
        return out.finish(ledger, {"programmes": len(listed), "words": sum(p["words"] for p in listed)},
                          **({"unreadable_pages": unreadable} if unreadable else {}))

    return Step(Stage(run_dir, "catalog", config, [folder]), call)


def tiny_models(run_dir: Path, config: teaching.TinyModelConfig, pages: Path | None = None,
                say: Callable[[str], None] | None = None, seed_file: Path | None = None,
                suites: tuple[str | Path, ...] = ()) -> Step:
    """model/: the tiny base; instruct/: the base trained further on the prompt formats. `pages`: a recipe's own
    pages, which the pair reads in place of the bundled catalog (they are the stage's input: new pages, new models).
    `suites`: what the recipe evaluates on (suite folders, or a drafted suite's records.jsonl): their questions, and
    near-duplicates of them, are never taught."""
    folders = [find_suite(str(s)) if Path(s).suffix != ".jsonl" else Path(s) for s in suites]
    inputs = teaching.default_corpus() if pages is None else [pages, *([seed_file] if seed_file else [])]
    return Step(Stage(run_dir, "tiny-model", config, [*inputs, *folders]),
                lambda out: teaching.train_pair(config, out, None if pages is None else read_pages(pages)[0],
                                                say=say, seed_file=seed_file, held_out=asks_one_of(folders)))


def asks_one_of(suites: list[Path]) -> Callable[[str], bool]:
    """question -> whether it is a question of these suites (folders or item files) or a near-duplicate of one."""
    items = [item for folder in suites for item in contamination_stage.load_eval_items(folder, [])]
    index = QuestionIndex([item.question for item in items], contamination_stage.ContaminationConfig())
    return lambda question: index.match(question) is not None


def generation(run_dir: Path, name: str, settings: BaseModel, inputs: list[Path], generator: BackendConfig,
               entry: Callable, force: bool = False) -> Step:
    """A generation stage (instructions, instances, from-docs, responses): entry(backend, out, force) ->
    StepResult."""
    stage_config = GenerationStageConfig(settings=settings.model_dump(mode="json"), generator=generator)
    return Step(Stage(run_dir, name, stage_config, [*inputs, *_local(generator.model)]),
                lambda out: entry(load_backend(generator), out, force))


def dedup(run_dir: Path, config: dedup_stage.DedupConfig, candidates: list[Path], seed_file: Path) -> Step:
    """All generated candidates together, near-duplicates removed, also against the seed tasks."""
    return Step(Stage(run_dir, "dedup", config, [*candidates, seed_file], dedup_stage.SPEED_ONLY),
                lambda out: dedup_stage.run(candidates, config, out, [seed_file]))


def screen(run_dir: Path, config: screen_stage.ScreenConfig, candidates: Path) -> Step:
    return Step(Stage(run_dir, "screen", config, [candidates], screen_stage.SPEED_ONLY),
                lambda out: screen_stage.run(candidates, config, out))


def review(run_dir: Path, config: review_stage.ReviewConfig, candidates: Path,
           say: Callable[[str], None] = lambda text: None, name: str = "review") -> Step:
    """The records reviewed in a local Argilla of the stage's own (`compare`: candidates ranked, name "compare")."""
    return Step(Stage(run_dir, name, config, [candidates]),
                lambda out: review_stage.review(candidates, config, out, say))


def pairs(run_dir: Path, config: pairs_stage.PairsConfig, ranked: Path) -> Step:
    """Preference pairs (prompt, chosen, rejected) from the ranked candidates, in pairs.jsonl."""
    return Step(Stage(run_dir, "pairs", config, [ranked]), lambda out: pairs_stage.run(ranked, config, out))


def suite_draft(run_dir: Path, folder: Path) -> Step:
    """records.jsonl: the questions drafted from the pages, as records for people to review (`suite_review`)."""
    config = SuiteDraftConfig()

    def call(out: Outputs) -> StepResult:
        ledger = out.start(config, [folder], drops=False)
        records = draft_stage.draft_records(read_pages(folder)[0])
        if not records:
            raise InputError(f"{folder}: no question could be drafted from its pages (no facts or sentences)")
        write_records(out["records.jsonl"], records)
        answerable = sum(r.meta["answerable"] for r in records)
        return out.finish(ledger, {"drafted": len(records), "answerable": answerable,
                                   "unanswerable": len(records) - answerable})

    return Step(Stage(run_dir, "suite-draft", config, [folder]), call)


def suite_review(run_dir: Path, config: review_stage.ReviewConfig, drafted: Path, data_dir: Path,
                 say: Callable[[str], None] = lambda text: None) -> Step:
    """The drafted questions reviewed as their own dataset on the review's Argilla server (DATA_DIR): kept or
    discarded, answered by their page or not, corrected (`annotation.questions.SUITE_QUESTIONS`)."""
    return Step(Stage(run_dir, "suite-review", config, [drafted]),
                lambda out: review_stage.review(drafted, config, out, say, questions=SUITE_QUESTIONS,
                                                guidelines=SUITE_GUIDELINES, data_dir=data_dir))


def suite(run_dir: Path, name: str, reviewed: Path) -> Step:
    """suite.yaml and items.jsonl: the reviewed questions as a suite that the eval stages run."""
    config = draft_stage.SuiteFromReviewConfig(name=name)
    return Step(Stage(run_dir, "suite", config, [reviewed]),
                lambda out: draft_stage.reviewed_suite(reviewed, config, out))


def holdout(run_dir: Path, suites: tuple[str, ...], curated: Path) -> Step:
    """records.jsonl: the curated set without the records that ask a suite question or share text with a suite
    item (dropped through the ledger), what finetuning reads."""
    config = contamination_stage.ContaminationConfig()
    folders = [find_suite(s) for s in suites]
    return Step(Stage(run_dir, "holdout", ContaminationGateConfig(suites=suites, check=config), [curated, *folders]),
                lambda out: holdout_stage.run(curated, folders, config, out))


def contamination_gate(run_dir: Path, suites: tuple[str, ...], curated: Path) -> Step:
    """Before finetuning: the curated set against the eval suites; any contaminated item stops the run."""
    config = contamination_stage.ContaminationConfig()
    folders = [find_suite(s) for s in suites]

    def call(out: Outputs) -> StepResult:
        result = contamination_stage.run(curated, folders, config, out)
        if error := result.gate_error():
            raise error
        return result

    gate = ContaminationGateConfig(suites=suites, check=config)
    return Step(Stage(run_dir, "contamination", gate, [curated, *folders]), call)


def finetune(run_dir: Path, config: finetune_stage.FinetuneConfig, data: Path, base: BackendConfig,
             name: str = "finetune", ref_adapter: Path | None = None, processes: int = 1,
             accelerate_config: Path | None = None) -> Step:
    """A LoRA adapter in adapter/, with its manifest and loss plot: on the curated set, or (DPO, name "dpo") on
    preference pairs on top of the SFT adapter; in several processes through accelerate launch when asked."""
    def call(out: Outputs) -> StepResult:
        shutil.rmtree(out["adapter"], ignore_errors=True)  # a stage that runs again trains again
        return finetune_stage.run(base.model, data, config, out, device=base.device,
                                  ref_adapter=str(ref_adapter) if ref_adapter else None, processes=processes,
                                  accelerate_config=accelerate_config)

    stage_config = FinetuneStageConfig(settings=config, base=base.model, processes=processes,
                                       ref_adapter=str(ref_adapter) if ref_adapter else None)
    inputs = [data, *_local(base.model), *([ref_adapter] if ref_adapter else []),
              *([accelerate_config] if accelerate_config else [])]
    return Step(Stage(run_dir, name, stage_config, inputs,
                      frozenset({f"settings.{k}" for k in finetune_stage.SPEED_ONLY})), call)


def evaluation(run_dir: Path, name: str, label: str, config: eval_stage.EvalConfig, model: BackendConfig) -> Step:
    """One model (a base, an instruct model, or a base with its adapter) answers and is scored on the suites."""
    stage_config = eval_stage.EvalRunConfig(settings=config, model=model)
    inputs = [*_local(model.model, model.adapter), *(find_suite(s) for s in config.suites)]
    return Step(Stage(run_dir, name, stage_config, inputs, frozenset({"settings.batch_size"})),
                lambda out: eval_stage.run(model, config, out, name=label))


def report(run_dir: Path, config: report_stage.ReportConfig, results: list[Path],
           judge: BackendConfig | None = None, suites: tuple[str, ...] = ()) -> Step:
    """The evaluated models compared (the first is the baseline), the SUITES in the recipe's order (its own first);
    a toxicity gate, when set, stops the run."""
    lead = tuple(load_suite(s).config.name for s in suites)

    def call(out: Outputs) -> StepResult:
        result = report_stage.run(results, config, out, judge, lead=lead)
        if error := result.gate_error():
            raise error
        return result

    stage_config = report_stage.ReportStageConfig(settings=config, judge=judge, lead=lead)
    return Step(Stage(run_dir, "report", stage_config, results), call)


def programmes(run_dir: Path) -> list[dict]:
    path = run_dir / "catalog" / "programmes.json"
    return json.loads(path.read_text()) if path.exists() else []

"""The offline demo: the longest part of the loop that works, on the bundled data, in a run folder.

Stages so far: build the tiny Falcon-architecture model from the bundled text (and load it back through
the same code that loads falcon-7b), validate the seed tasks, check the catalog. Each stage writes a
manifest and is skipped on rerun while its config and inputs are unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from workbench.catalog import CATALOG_DIR, SEED_TASKS, load_catalog
from workbench.errors import InputError
from workbench.io import Problem, atomic_write_text, load_records, write_problems, write_records
from workbench.runs import Ledger, Stage, StageOutcome, run_stage
from workbench.stats import Stats, compute_stats
from workbench.tiny import TinySpec, build_tiny_model


class TinyModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Literal["falcon", "llama"] = "falcon"  # falcon: the architecture of falcon-7b
    layers: int = 2  # falcon-7b has 32
    hidden: int = 128  # falcon-7b has 4544
    heads: int = 4  # falcon-7b has 71
    vocab: int = 2000  # falcon-7b has 65,024
    seed: int = 0  # weight initialisation


class SeedsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_field_bytes: int = 1_000_000  # longer text fields are quarantined
    allow_unknown_categories: bool = False  # only Dolly's eight categories


class CatalogConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_programmes: int = 12  # the course-advisor suite asks about a dozen programmes


@dataclass
class DemoResult:
    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)
    stats: Stats | None = None
    problems: list[Problem] = field(default_factory=list)
    programmes: list[dict] = field(default_factory=list)


def tiny_model_stage(run_dir: Path, config: TinyModelConfig, force: bool = False) -> StageOutcome:
    from workbench.tiny import default_corpus

    corpus = default_corpus()

    def work(stage: Stage, ledger: Ledger) -> dict[str, int]:
        from transformers.utils import logging as transformers_logging

        from workbench.models import GenerationParams, get_model

        transformers_logging.disable_progress_bar()  # a 0.6 M-parameter model loads in milliseconds

        out = build_tiny_model(stage.path("model"), TinySpec(**config.model_dump()), corpus)
        # Load it back the way falcon-7b is loaded, and check that generation yields tokens.
        model = get_model(str(out))
        completions = model.generate(["Do I have to know programming", "The semester fee is"],
                                     GenerationParams(max_new_tokens=8))
        return {"parameters": model.parameters, "vocab": len(model.tokenizer),
                "generated_prompts": sum(1 for c in completions if c)}

    return run_stage(Stage(run_dir, "tiny-model", config, corpus), work, force=force)


def seeds_stage(run_dir: Path, config: SeedsConfig, seeds: Path = SEED_TASKS,
                force: bool = False) -> StageOutcome:
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


def run_demo(runs_dir: str | Path = "runs", name: str = "demo", force: bool = False) -> DemoResult:
    """Run every demo stage in runs_dir/name; returns what each stage did (or that it was skipped)."""
    result = DemoResult(run_dir=Path(runs_dir) / name)
    result.outcomes.append(tiny_model_stage(result.run_dir, TinyModelConfig(), force))
    seeds = seeds_stage(result.run_dir, SeedsConfig(), force=force)
    result.outcomes.append(seeds)
    result.outcomes.append(catalog_stage(result.run_dir, CatalogConfig(), force=force))
    result.stats = compute_stats(load_records(seeds.stage.path("records.jsonl"), result.problems))
    result.programmes = json.loads(result.outcomes[-1].stage.path("programmes.json").read_text())
    return result

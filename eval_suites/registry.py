"""Eval suites are data: a folder `NAME/` with `suite.yaml` (prompt, generation parameters, metrics) and
`items.jsonl` (one item per line, each with an `id`). The bundled suites live in `eval_suites/suites/`; users add
their own folders and pass `--suites-dir` (searched first).

A suite is a fixed benchmark, so a bad item is an error naming the file, line and field, never quarantined: scores
over a silently shrunken suite would not be comparable with earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval_suites.metrics import METRICS
from workbench.core.config import load_config
from workbench.core.errors import ConfigError, InputError
from workbench.core.fingerprint import fingerprint
from workbench.core.io import Problem, read_json_lines
from workbench.core.models import GenerationParams
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, ANSWER_STOPS, ANSWER_TEMPLATE_ID, build_prompt
from workbench.core.records import did_you_mean

SUITES_DIR = Path(__file__).parent / "suites"
SYSTEM_PROMPTS = {"none": None, "advisor": ADVISOR_SYSTEM_PROMPT}


class PromptSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    template: Literal["dolly-sections/v1"] = ANSWER_TEMPLATE_ID  # workbench.core.prompts.format_prompt
    system: Literal["none", "advisor"] = "none"  # advisor: the course-advisor system prompt
    # auto: the tokenizer's chat template when the model has one (as finetuning does), else the sections
    chat_template: Literal["auto", "never"] = "auto"


class GenerationSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.0, ge=0.0)  # greedy by default: the same model gives the same answers
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=lambda: list(ANSWER_STOPS))


class SuiteConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    task: Literal["qa", "brainstorm"]
    prompt: PromptSettings = PromptSettings()
    generation: GenerationSettings = GenerationSettings()
    metrics: list[str]
    headline: str | None = None  # the metric a report leads with (default: the first of `metrics`)

    @property
    def main_metric(self) -> str:
        return self.headline or self.metrics[0]


class QAItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    context: str = ""
    references: list[str] = Field(min_length=1)  # for unanswerable items: how a right answer says so
    answerable: bool = True


class BrainstormItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    count: int = Field(ge=1)  # how many ideas the prompt asks for
    keywords: list[str] = Field(default_factory=list)  # a few topic words


ITEM_TYPES: dict[str, type[BaseModel]] = {"qa": QAItem, "brainstorm": BrainstormItem}


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    config: SuiteConfig
    items: list[dict[str, Any]]
    sha256: str  # over the items file and the settings: a changed item or prompt means new generations

    def instruction(self, item: dict[str, Any]) -> str:
        return item["question"] if self.config.task == "qa" else item["prompt"]

    def prompt(self, item: dict[str, Any], tokenizer=None) -> str:
        """The item's prompt; with the model's tokenizer, its chat template where it has one (suite setting)."""
        return build_prompt(self.instruction(item), item.get("context", ""), SYSTEM_PROMPTS[self.config.prompt.system],
                            tokenizer, self.config.prompt.chat_template == "auto")

    def params(self, **overrides: Any) -> GenerationParams:
        values = {**self.config.generation.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        values["stop"] = tuple(values["stop"])
        return GenerationParams(**values)


def search_path(suites_dirs: list[str | Path] | None = None) -> list[Path]:
    """The user's suite folders, then the bundled ones; a folder that is not there is an error, not skipped
    (a misspelt --suites-dir would silently run the bundled suite of the same name)."""
    for d in suites_dirs or []:
        if not Path(d).is_dir():
            raise InputError(f"{d}: {'not a folder' if Path(d).exists() else 'no such folder'} of eval suites",
                             hint="--suites-dir names a folder whose subfolders hold suite.yaml")
    return [*(Path(d) for d in suites_dirs or []), SUITES_DIR]


def list_suites(suites_dirs: list[str | Path] | None = None) -> dict[str, Path]:
    """Suite name -> folder; a user's folder of the same name hides the bundled one."""
    found: dict[str, Path] = {}
    for directory in reversed(search_path(suites_dirs)):
        if directory.is_dir():
            found.update({p.name: p for p in sorted(directory.iterdir()) if (p / "suite.yaml").is_file()})
    return dict(sorted(found.items()))


def find_suite(name: str, suites_dirs: list[str | Path] | None = None) -> Path:
    """The folder of a suite given by name or path."""
    if (Path(name) / "suite.yaml").is_file():
        return Path(name)
    known = list_suites(suites_dirs)
    if name not in known:
        raise InputError(f"no eval suite named {name!r}{did_you_mean(name, tuple(known))}",
                         hint=f"suites: {', '.join(known) or 'none'}; add your own folder with --suites-dir")
    return known[name]


def load_suite(name: str, suites_dirs: list[str | Path] | None = None) -> Suite:
    """A suite by name (searched in `suites_dirs`, then the bundled ones) or by folder path; validated."""
    folder = find_suite(name, suites_dirs)
    config = load_config(SuiteConfig, folder / "suite.yaml")
    for metric in config.metrics:
        if metric not in METRICS:
            raise ConfigError(f"{folder / 'suite.yaml'}: metrics: unknown metric {metric!r}"
                              f"{did_you_mean(metric, tuple(METRICS))}")
        if config.task not in METRICS[metric].tasks:
            raise ConfigError(f"{folder / 'suite.yaml'}: metrics: {metric} does not apply to {config.task} items")
    if config.headline is not None and config.headline not in config.metrics:
        raise ConfigError(f"{folder / 'suite.yaml'}: headline: {config.headline!r} is not one of its metrics "
                          f"({', '.join(config.metrics)})")
    items_path = folder / "items.jsonl"
    if not items_path.is_file():
        raise InputError(f"{items_path}: missing (a suite needs its items)")
    problems: list[Problem] = []
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, obj, raw in read_json_lines(items_path, problems):
        try:
            item = ITEM_TYPES[config.task](**obj).model_dump()
        except ValidationError as e:
            error = e.errors()[0]
            problems.append(Problem(str(items_path), number, ".".join(str(p) for p in error["loc"]) or "-",
                                    error["msg"], raw))
            continue
        if item["id"] in seen:
            problems.append(Problem(str(items_path), number, "id",
                                    f"duplicate id {item['id']!r} (first on line {seen[item['id']]})", raw))
            continue
        seen[item["id"]] = number
        items.append(item)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}", hint="a suite must be valid as a whole; fix the items file")
    if not items:
        raise InputError(f"{items_path}: no items")
    # What the report leads with changes no generation: it is left out of the suite's identity.
    identity = config.model_dump(exclude={"headline"})
    return Suite(config.name, folder, config, items, fingerprint(items=items_path, config=identity))

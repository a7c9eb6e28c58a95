"""Run folders: runs/NAME/STAGE/ with manifest.json, records, dropped records, a ledger and a DONE marker.

A stage is skipped on rerun when DONE exists and the hash of its config and its inputs' sha256s is
unchanged; DONE is written last, so a stage killed half-way runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workbench.core.config import config_hash
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.io import atomic_write_text, sha256_file
from workbench.core.records import Record

PACKAGES = ("instruct-workbench", "torch", "transformers", "tokenizers", "peft", "bitsandbytes", "datasets",
            "datasketch", "detoxify", "argilla", "pydantic", "rouge-score")


def workbench_home() -> Path:
    """Per-user state (caches, the local Argilla data dir): $WORKBENCH_HOME, default ~/.workbench."""
    return Path(os.environ.get("WORKBENCH_HOME") or "~/.workbench").expanduser()


class StagePending(WorkbenchError):
    """A stage waits for something outside the program (people reviewing): the run stops here, not as a failure,
    and the next run continues the stage."""


class Ledger:
    """What a stage did to records: one event per drop or edit, counted by reason."""

    def __init__(self, stage: str, run: str | None = None):
        self.stage = stage
        self.run = run
        self.events: list[dict[str, Any]] = []
        self.counts: Counter = Counter()

    def log(self, record: Record, action: str, reason: str, detail: Any = None, **changes: Any) -> Record:
        """Count the event and return the record with it in its lineage (and `changes` applied)."""
        self.count(record, action, reason)
        return record.with_event(self.stage, action, reason, detail, self.run, **changes)

    def count(self, record: Record, action: str, reason: str) -> None:
        """Count an event whose lineage entry the caller has already written."""
        self.events.append({"record_id": record.id, "stage": self.stage, "action": action, "reason": reason})
        self.counts[f"{action}: {reason}"] += 1

    def drop(self, record: Record, reason: str, detail: Any = None) -> Record:
        return self.log(record, "drop", reason, detail)

    def edit(self, record: Record, reason: str, detail: Any = None, **changes: Any) -> Record:
        return self.log(record, "edit", reason, detail, **changes)

    def to_jsonl(self) -> str:
        return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.events)


def fingerprint(path: str | Path, file_sha256: Callable[[Path], str] = sha256_file) -> str:
    """sha256 of a file, or of a folder's sorted (relative path, file sha256) list."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
        return digest.hexdigest()
    raise InputError(f"{path}: no such file or folder")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_hash() -> str | None:
    """The workbench checkout's commit, or None when installed from a wheel."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")  # stages can start within one second


@dataclass
class Stage:
    """One stage's folder inside a run, and what decides whether it must run again."""

    run_dir: Path
    name: str
    config: BaseModel
    inputs: list[Path]
    exclude: frozenset[str] = frozenset()  # config fields that do not change results (batch size, device)
    input_hashes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.input_hashes = {str(p): fingerprint(p) for p in self.inputs}

    @property
    def dir(self) -> Path:
        return self.run_dir / self.name

    @property
    def run(self) -> str:
        return self.run_dir.name

    def path(self, filename: str) -> Path:
        return self.dir / filename

    @property
    def key(self) -> str:
        parts = {"config": config_hash(self.config, self.exclude), "inputs": sorted(self.input_hashes.values())}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path("manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def is_done(self) -> bool:
        """DONE exists and the manifest was written for this config and these inputs."""
        manifest = self.manifest()
        return self.path("DONE").exists() and manifest is not None and manifest.get("key") == self.key


@dataclass
class StageOutcome:
    stage: Stage
    skipped: bool
    manifest: dict[str, Any]


# work(stage, ledger) -> {"in": n, "out": m, ...}: writes its outputs into stage.dir, returns counts.
StageWork = Callable[[Stage, Ledger], dict[str, int]]


def run_stage(stage: Stage, work: StageWork, *, force: bool = False) -> StageOutcome:
    """Run `work` for `stage` unless it is done for the same config and inputs (`force` reruns it)."""
    if not force and stage.is_done():
        return StageOutcome(stage, True, stage.manifest() or {})
    stage.dir.mkdir(parents=True, exist_ok=True)
    stage.path("DONE").unlink(missing_ok=True)
    started, clock = _now(), time.perf_counter()
    ledger = Ledger(stage.name, stage.run)
    counts = work(stage, ledger)
    atomic_write_text(stage.path("ledger.jsonl"), ledger.to_jsonl())
    manifest = {
        "stage": stage.name, "run": stage.run, "key": stage.key,
        "config": stage.config.model_dump(mode="json"),
        "config_hash": config_hash(stage.config, stage.exclude),
        "inputs": [{"path": p, "sha256": h} for p, h in stage.input_hashes.items()],
        "versions": package_versions(), "git": git_hash(),
        "started": started, "finished": _now(), "seconds": round(time.perf_counter() - clock, 3),
        "counts": counts, "ledger": dict(sorted(ledger.counts.items())),
    }
    atomic_write_text(stage.path("manifest.json"), json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(stage.path("DONE"), stage.key + "\n")  # last: its presence means the outputs are whole
    return StageOutcome(stage, False, manifest)


def stage_summaries(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every stage folder of a run, in the order the stages ran: status, times, counts, reasons, files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    stages = []
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # not a stage (e.g. a stage that never finished its first run has no manifest)
        done = (folder / "DONE").exists() and (folder / "DONE").read_text().strip() == manifest.get("key")
        files = sorted(str(p.relative_to(folder)) for p in folder.iterdir()
                       if p.name not in ("manifest.json", "DONE", "ledger.jsonl"))
        stages.append({"stage": folder.name, "status": "done" if done else "incomplete",
                       "started": manifest.get("started"), "finished": manifest.get("finished"),
                       "seconds": manifest.get("seconds"), "counts": manifest.get("counts", {}),
                       "ledger": manifest.get("ledger", {}), "path": str(folder), "files": files})
    return sorted(stages, key=lambda s: (s["started"] or "", s["finished"] or ""))


def list_runs(runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """The runs in a runs folder: name, stages done, last activity, total stage time."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir}: no runs folder here", hint="runs are made by `workbench demo` (runs/demo)")
    runs = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        stages = stage_summaries(folder)
        if stages:
            runs.append({"run": folder.name, "path": str(folder), "stages": len(stages),
                         "done": sum(s["status"] == "done" for s in stages),
                         "last": max(s["finished"] or "" for s in stages),
                         "seconds": round(sum(s["seconds"] or 0 for s in stages), 1)})
    return runs

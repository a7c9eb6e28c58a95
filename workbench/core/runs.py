"""Run folders and the step contract: where a stage writes, the manifest it leaves, and when it may be skipped.

Every stage has one entry, `entry(inputs..., config, out: Outputs) -> StepResult`, that the CLI command and the
recipe runner both call. The entry starts the outputs with its config and inputs (which gives it a Ledger), writes
its files through `out["NAME"]`, and ends with `out.finish(ledger, counts)`, which writes what the ledger holds
(dropped.jsonl, ledger.jsonl), the quarantine of bad input lines, and manifest.json (config, inputs and their
sha256, versions, git commit, times, counts, reasons). A command writes beside the file its -o names
(`Outputs.beside`); a recipe writes into runs/NAME/STAGE/ (`Outputs.folder`), where `run_stage` skips a stage whose
DONE marker holds the fingerprint of the same config and inputs, and writes DONE last, so a stage killed half-way
runs again.

The empty-result rule: a stage whose input had record lines but kept none (every line bad, every record dropped)
writes its outputs, so the quarantine and the dropped file say why, and then fails with `EmptyResult` unless the
outputs were made with `allow_empty` (a command's --allow-empty). `finish` applies it to counts with "in"/"out"
(filters) or "kept"/"rejected" (generation); commands without a stage (import, export) call `refuse_empty`.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workbench.core import locks
from workbench.core.distributed import is_main
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.fingerprint import config_data, config_hash, fingerprint, path_sha256
from workbench.core.io import (
    Problem,
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    check_output,
    refuse_overwrite,
    write_problems,
)
from workbench.core.ledger import Ledger
from workbench.core.urls import masked_data

PACKAGES = ("instruct-workbench", "torch", "transformers", "tokenizers", "peft", "bitsandbytes", "datasets",
            "datasketch", "detoxify", "argilla", "pydantic", "rouge-score")


FOLDER_OUTPUTS = ("adapter", "results")  # the outputs that are folders (a -o that names one is a folder)
# A stage's own bookkeeping, rewritten after its manifest (generation's state.json records the bytes it wrote).
NOT_OUTPUTS = ("manifest.json", "state.json")


class StagePending(WorkbenchError):
    """A stage waits for something outside the program (people reviewing): the run stops here, not as a failure,
    and the next run continues the stage."""


class EmptyResult(InputError):
    """Records were read and none was kept: an empty output is a failure unless asked for (--allow-empty)."""


def refuse_empty(inputs: Iterable[str | Path], valid: int, kept: int, reasons: dict[str, int],
                 problems: Iterable[Problem] = (), where: Iterable[str | Path] = (), allow_empty: bool = False,
                 stage: str | None = None) -> None:
    """Raise EmptyResult when VALID records plus the bad lines among PROBLEMS gave KEPT = 0, naming the main
    reasons and the files that hold the left-out lines (and, in a recipe, the stage)."""
    bad = len({(p.file, p.line) for p in problems})
    seen, reasons = valid + bad, {**reasons, **({"bad line(s) quarantined": bad} if bad else {})}
    if not seen and not allow_empty:  # an empty input file (an export that failed, a cut download) is not a dataset
        empty = [p for p in inputs if Path(p).is_file() and not _has_content(Path(p))]
        if empty and not kept:
            raise EmptyResult((f"stage {stage}: " if stage else "") + f"{empty[0]}: an empty file, no record in it",
                              hint="check how it was made; pass --allow-empty to accept an empty result")
    if allow_empty or kept or not seen:
        return
    top = sorted(((n, r) for r, n in reasons.items() if n), key=lambda nr: (-nr[0], nr[1]))
    why = "; ".join(f"{n:,} {reason}" for n, reason in top[:3]) + ("; ..." if len(top) > 3 else "")
    files = ", ".join(map(str, where))
    raise EmptyResult((f"stage {stage}: " if stage else "") + f"{', '.join(map(str, inputs))}: {seen:,} record "
                      "line(s) read, none kept"
                      + (f" ({why})" if why else ""),
                      hint=(f"why each was left out: {files}; " if files else "")
                      + "pass --allow-empty to accept an empty result")


def _has_content(path: Path) -> bool:
    """Anything but whitespace in the file's first 64 KiB (a gzip file's bytes count: its records are inside)."""
    with open(path, "rb") as f:
        return bool(f.read(65536).strip())


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


def stage_key(config: BaseModel, inputs: Iterable[Path], exclude: frozenset[str] = frozenset()) -> str:
    """What decides a stage's output: its config (without speed-only fields) and its inputs' contents."""
    return fingerprint(config=config_data(config, exclude), inputs=sorted(path_sha256(p) for p in inputs))


@dataclass
class StepResult:
    """What one run of a stage did: its manifest (counts, reasons, files) and the bad input lines it quarantined."""

    manifest: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return self.manifest["counts"]

    @property
    def reasons(self) -> dict[str, int]:
        return self.manifest["ledger"]

    @property
    def files(self) -> dict[str, str]:
        return self.manifest["files"]

    @property
    def details(self) -> dict[str, Any]:
        return self.manifest.get("details", {})

    @property
    def seconds(self) -> float:
        return self.manifest["seconds"]

    @property
    def kept(self) -> int | None:
        """Records written (None for a stage that keeps no records: training, eval, a report)."""
        return self.counts.get("out", self.counts.get("kept"))

    @property
    def read(self) -> int | None:
        return self.counts.get("in")

    @property
    def rejected(self) -> int:
        return sum(n for reason, n in self.reasons.items() if reason.startswith("drop: "))

    @property
    def resumed(self) -> bool:
        return bool(self.details.get("resumed"))

    @property
    def quarantine_file(self) -> str | None:
        return self.files.get("quarantine.jsonl")

    def summary_lines(self) -> list[str]:
        """What the run of the stage did, as a command prints it: where the records went and how many were dropped,
        why, the tokens a generator used, and the manifest (the bad input lines are shown apart, on stderr)."""
        lines, files, counts = [], self.files, self.counts
        if self.kept is not None and "records.jsonl" in files:
            line = f"Kept {self.kept:,}" + (f" of {self.read:,}" if self.read is not None else "") + \
                f" records in {files['records.jsonl']}"
            if "dropped.jsonl" in files:
                line += f"; {self.rejected:,} rejected in {files['dropped.jsonl']}"
            lines.append(line + (" (resumed)" if self.resumed else ""))
        lines += [f"  {line}" for line in reason_lines(self.reasons)]
        lines += [f"  page left out: {line}" for line in self.details.get("unreadable_pages", [])]
        if "prompt_tokens" in counts:
            lines.append(f"Tokens: {counts.get('prompt_tokens', 0):,} prompt, {counts.get('completion_tokens', 0):,} "
                         f"completion, {counts.get('requests', 0):,} requests")
        lines.append(f"Manifest: {files['manifest.json']}")
        return lines


def reason_lines(reasons: dict[str, int]) -> list[str]:
    """A ledger's counts, most common first: "12  drop: near-duplicate"."""
    return [f"{n:,}  {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]


class Outputs:
    """Where one run of a stage writes, named by role: `out["records.jsonl"]`, `out["dropped.jsonl"]`, ...

    In a folder (`Outputs.folder`, a recipe's stage folder) each file has that plain name. Beside a file
    (`Outputs.beside`, what a command's -o names) the records (or the stage's main output) go to that file and every
    other file is named after it: NAME.rejected.jsonl for the dropped records, NAME.ledger.jsonl, NAME.manifest.json,
    NAME.clusters.jsonl.
    `files` puts any of them elsewhere (a command's --rejected or --clusters). No output may be one of the inputs.
    """

    def __init__(self, stage: str, resolve: Callable[[str], Path], run: str | None = None, key: str | None = None,
                 files: dict[str, Path | None] | None = None, allow_empty: bool = False, target: Path | None = None):
        self.stage, self.run, self.key = stage, run, key
        self.target = target  # what is locked while the outputs are written: the stage folder, or what -o names
        self._lock: locks.OutputLock | None = None
        self.allow_empty = allow_empty
        self._resolve = resolve
        self._files = {name: Path(path) for name, path in (files or {}).items() if path is not None}
        self._used: dict[str, Path] = {}
        self._inputs: list[Path] = []
        self._started: tuple[str, float] | None = None
        self._drops = True
        self._manifest: dict[str, Any] = {}
        self.main: str | None = None  # beside a file: the name of the output -o names

    @classmethod
    def folder(cls, directory: str | Path, stage: str, *, run: str | None = None, key: str | None = None,
               files: dict[str, Path | None] | None = None, allow_empty: bool = False) -> Outputs:
        directory = Path(directory)
        return cls(stage, lambda name: directory / name, run, key, files, allow_empty, target=directory)

    @classmethod
    def beside(cls, path: str | Path, stage: str, *, main: str = "records.jsonl", dropped: str = ".rejected.jsonl",
               files: dict[str, Path | None] | None = None, allow_empty: bool = False) -> Outputs:
        """PATH is the output named `main` (the records, a report, an adapter folder); the rest are named after it."""
        path = Path(path)
        stem = path.name.removesuffix(".gz").removesuffix(path.with_suffix("").suffix) if path.suffix == ".gz" \
            else path.name.removesuffix(path.suffix)  # NAME.jsonl.gz is NAME, as NAME.jsonl is

        def resolve(name: str) -> Path:
            if name == main:
                return path
            return path.with_name(stem + (dropped if name == "dropped.jsonl" else "." + name))

        outputs = cls(stage, resolve, files=files, allow_empty=allow_empty, target=path)
        outputs.main = main
        return outputs

    def _path(self, name: str) -> Path:
        return self._files.get(name) or self._resolve(name)

    def __getitem__(self, name: str) -> Path:
        path = self._path(name)
        refuse_overwrite(path, self._inputs, f"this {self.stage} run")
        _refuse_shared(self._used, name, path)
        self._used[name] = path
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def guard(self, inputs: Iterable[str | Path], drops: bool = True) -> None:
        """Refuse, before anything is written, a missing input, an output given twice (-o and --clusters the same
        file) or as an input, an output that is a device, FIFO or folder where a file belongs; then lock the outputs
        (a second writer of them is refused, naming this process). `start` calls it; a command calls it too before
        slow work (loading a model). `release` (or `finish`) lets the lock go."""
        inputs = [Path(p) for p in inputs]
        for path in inputs:  # a command calls this before loading a model: a missing input says so at once
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
        files = [p for p in inputs if p.is_file()]
        if files and not self.allow_empty and not any(map(_has_content, files)):  # every input empty: say it now
            refuse_empty(files, 0, 0, {}, stage=self.stage if self.run else None)
        named: dict[str, Path] = {}
        for name in (*([self.main] if self.main else []), *self._files, *(["dropped.jsonl"] if drops else [])):
            path = self._path(name)
            refuse_overwrite(path, inputs, f"this {self.stage} run")
            _refuse_shared(named, name, path)
            check_output(path, folder=name in FOLDER_OUTPUTS)
            named[name] = path
        if self.target is not None and self._lock is None and is_main():  # launched workers share the main's
            check_output(self.target, folder=self.main is None or self.main in FOLDER_OUTPUTS)
            self._lock = locks.acquire(self.target)

    def release(self) -> None:
        """Let the outputs' lock go (the stage is done, or failed)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def start(self, config: BaseModel, inputs: Iterable[str | Path], exclude: frozenset[str] = frozenset(),
              drops: bool = True) -> Ledger:
        """Begin the run: note the config and the inputs (and their sha256) for the manifest; returns its ledger.
        `drops`: the stage can drop records, so it always leaves a dropped file and a ledger (empty or not)."""
        self._drops = drops
        inputs = [Path(p) for p in inputs]
        self._inputs = inputs
        self.guard(inputs, drops)
        hashes = {str(p): path_sha256(p) for p in inputs}
        self._manifest = {
            "stage": self.stage, "run": self.run, "key": self.key or stage_key(config, inputs, exclude),
            "config": masked_data(config.model_dump(mode="json")), "config_hash": config_hash(config, exclude),
            "inputs": [{"path": p, "sha256": h} for p, h in hashes.items()],
        }
        self._started = (_now(), time.perf_counter())
        return Ledger(self.stage, self.run)

    def finish(self, ledger: Ledger, counts: dict[str, int], problems: Iterable[Problem] = (),
               **details: Any) -> StepResult:
        """Write what the ledger holds, the quarantine (if any line was bad) and manifest.json; `details` are
        stage facts worth keeping (the scorer, a bias report, token usage)."""
        if self._started is None:
            raise RuntimeError("Outputs.finish before Outputs.start")
        problems = list(problems)
        if problems:
            write_problems(self["quarantine.jsonl"], problems)
        elif self["quarantine.jsonl"].exists():
            self["quarantine.jsonl"].unlink()  # an earlier run's bad lines: not this run's
            del self._used["quarantine.jsonl"]
        if ledger.written:  # resumable generation and dedup's workers wrote theirs already: append what is left
            if ledger.pending:
                with open(self["dropped.jsonl"], "a", encoding="utf-8") as d, \
                        open(self["ledger.jsonl"], "a", encoding="utf-8") as e:
                    ledger.write(d, e)
        elif ledger.pending or self._drops:
            with atomic_open(self["dropped.jsonl"]) as d, atomic_open(self["ledger.jsonl"]) as e:
                ledger.write(d, e)
        manifest_path = self["manifest.json"]
        started, clock = self._started
        files = {name: str(path) for name, path in self._used.items() if name != "manifest.json" and path.exists()}
        files["manifest.json"] = str(manifest_path)
        manifest = {**self._manifest, "versions": package_versions(), "git": git_hash(),
                    "started": started, "finished": _now(), "seconds": round(time.perf_counter() - clock, 3),
                    "counts": counts, "ledger": dict(sorted(ledger.counts.items())), "files": files,
                    "outputs": output_sums(files),
                    "quarantined": len(problems), **({"details": details} if details else {})}
        atomic_write_json(manifest_path, manifest)
        if self.run is None:  # a recipe's stage is locked until run_stage has written DONE
            self.release()
        problems_of_records = problems
        inputs = [p["path"] for p in self._manifest["inputs"]] or [self.stage]
        if {"in", "out"} <= counts.keys():
            valid, kept = counts["in"], counts["out"]
        elif {"kept", "rejected"} <= counts.keys():
            valid, kept = counts["kept"] + counts["rejected"], counts["kept"]
            # What was read and dropped is what the generator wrote, not the prompts' files: name it so.
            inputs = [f"the candidates generated from {', '.join(inputs)}"]
        else:  # not a stage that keeps records (training, eval, a report): the rule does not apply
            valid = kept = 0
            problems_of_records: list[Problem] = []
        left_out = [files[n] for n in ("quarantine.jsonl", "dropped.jsonl")
                    if n in files and Path(files[n]).stat().st_size]
        refuse_empty(inputs, valid, kept, ledger.counts,
                     problems_of_records, left_out, self.allow_empty, self.stage if self.run else None)
        return StepResult(manifest, problems)


def output_sums(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of each output file (and folder output: an adapter), so that a rerun can tell an output
    damaged or changed after its stage finished from one it may trust."""
    sums = {}
    for name, path in files.items():
        path = Path(path)
        if name in NOT_OUTPUTS:
            continue
        if path.is_file() or (name in FOLDER_OUTPUTS and path.is_dir()):
            sums[name] = {"size": _size(path), "sha256": path_sha256(path)}
    return sums


def _size(path: Path) -> int:
    """A file's bytes, or a folder's files' bytes together."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def changed_outputs(manifest: dict[str, Any]) -> list[str]:
    """What became of a finished stage's outputs since (`output_sums` in its manifest): "records.jsonl: 2,048 bytes,
    was 9,310", "adapter: missing", "ledger.jsonl: changed (same size)"; empty when all are as written."""
    changes = []
    for name, was in manifest.get("outputs", {}).items():
        path = Path(manifest.get("files", {}).get(name, ""))
        if not path.exists():
            changes.append(f"{name}: missing")
            continue
        size = _size(path)
        if size != was["size"]:
            changes.append(f"{name}: {size:,} bytes, was {was['size']:,}")
        elif path_sha256(path) != was["sha256"]:
            changes.append(f"{name}: changed (same size)")
    return changes


def _refuse_shared(outputs: dict[str, Path], name: str, path: Path) -> None:
    """One file is one output: -o and --clusters (or --rejected) naming the same file would replace each other."""
    def role(n: str) -> str:
        names = {"records.jsonl": "the records", "dropped.jsonl": "the rejected records"}
        return names.get(n, f"the {n.split('.')[0]}")

    for other, used in outputs.items():
        if other != name and used.resolve() == path.resolve():
            raise InputError(f"{path}: named as two outputs ({role(other)} and {role(name)}); one would replace the "
                             "other", hint="give each output its own file")


@dataclass
class Stage:
    """One stage's folder inside a run, and what decides whether it must run again."""

    run_dir: Path
    name: str
    config: BaseModel
    inputs: list[Path]
    exclude: frozenset[str] = frozenset()  # config fields that do not change results (batch size, device)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.inputs = [Path(p) for p in self.inputs]
        self.key = stage_key(self.config, self.inputs, self.exclude)

    @property
    def dir(self) -> Path:
        return self.run_dir / self.name

    @property
    def run(self) -> str:
        return self.run_dir.name

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def outputs(self, allow_empty: bool = False) -> Outputs:
        return Outputs.folder(self.dir, self.name, run=self.run, key=self.key, allow_empty=allow_empty)

    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path("manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def is_done(self) -> bool:
        """DONE holds this stage's key: it finished for this config and these inputs."""
        try:
            return self.path("DONE").read_text().strip() == self.key
        except OSError:
            return False

    def changed(self) -> list[str]:
        """The outputs changed since the stage finished (`changed_outputs`); a done stage with one is done again."""
        return changed_outputs(self.manifest() or {})


@dataclass
class StageOutcome:
    stage: Stage
    skipped: bool
    manifest: dict[str, Any]
    redone_because: list[str] = field(default_factory=list)  # a done stage's outputs that had changed since

    def summary_lines(self) -> list[str]:
        """The stage's state and counts, then its ledger's reasons (as `workbench run` prints them)."""
        state = "skipped (unchanged)" if self.skipped else f"done in {self.manifest['seconds']:.1f} s"
        if self.redone_because:
            state = f"done again in {self.manifest['seconds']:.1f} s (its outputs had changed since it finished: " \
                f"{'; '.join(self.redone_because)})"
        counts = ", ".join(f"{k} {v:,}" for k, v in self.manifest["counts"].items())
        return [f"{self.stage.name}: {state} — {counts}  ({self.stage.dir})",
                *(f"    {line}" for line in reason_lines(self.manifest["ledger"])),
                *(f"    page left out: {line}"
                  for line in self.manifest.get("details", {}).get("unreadable_pages", []))]


def run_stage(stage: Stage, step: Callable[[Outputs], StepResult], *, force: bool = False,
              allow_empty: bool = False) -> StageOutcome:
    """Run the stage's step into its folder unless it is done for the same config and inputs and its outputs are as
    it left them (`force` reruns); a stage that kept none of its records stops the run (EmptyResult) unless
    `allow_empty`."""
    changed: list[str] = []
    if not force and stage.is_done():
        changed = stage.changed()
        if not changed:
            return StageOutcome(stage, True, stage.manifest() or {})
    stage.dir.mkdir(parents=True, exist_ok=True)
    out = stage.outputs(allow_empty)
    out.guard([])  # locked before DONE goes: another run of this stage now is refused
    try:
        stage.path("DONE").unlink(missing_ok=True)
        if changed:  # done again from the start: nothing of the damaged outputs is resumed or built on
            for name in [*(stage.manifest() or {}).get("outputs", {}), "state.json"]:
                path = stage.path(name)
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        result = step(out)
        atomic_write_text(stage.path("DONE"), stage.key + "\n")  # last: its presence means the outputs are whole
    finally:
        out.release()
    return StageOutcome(stage, False, result.manifest, changed)


def stage_summaries(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every stage folder of a run, in the order the stages ran: status, times, counts, reasons, files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    stages = []
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        path = folder / "manifest.json"
        if not path.is_file():
            continue  # not a stage (e.g. a stage that never finished its first run has no manifest)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            # Shown, not skipped: a run whose stage cannot be read must not look like a run without that stage.
            stages.append({"stage": folder.name, "status": "unreadable", "problem": f"{path}: not a manifest ({e})",
                           "started": None, "finished": None, "seconds": None, "counts": {}, "ledger": {},
                           "path": str(folder), "files": sorted(p.name for p in folder.iterdir())})
            continue
        done = (folder / "DONE").exists() and (folder / "DONE").read_text().strip() == manifest.get("key")
        files = sorted(str(p.relative_to(folder)) for p in folder.iterdir()
                       if p.name not in ("manifest.json", "DONE", "ledger.jsonl"))
        stages.append({"stage": folder.name, "status": "done" if done else "incomplete",
                       "started": manifest.get("started"), "finished": manifest.get("finished"),
                       "seconds": manifest.get("seconds"), "counts": manifest.get("counts", {}),
                       "ledger": manifest.get("ledger", {}), "path": str(folder), "files": files})
    return sorted(stages, key=lambda s: (s["started"] or "", s["finished"] or ""))


def stage_lines(run: str, stages: list[dict[str, Any]]) -> list[str]:
    """A run's stages (`stage_summaries`) as text blocks: stage, status, time, counts, files, rejection reasons."""
    lines = [f"Run {run}: {len(stages)} stages"]
    for s in stages:
        if s["status"] == "unreadable":
            lines.append(f"{s['stage']}: unreadable: {s['problem']}")
            continue
        lines.append(f"{s['stage']}: {s['status']}, {s['seconds'] or 0:.1f} s, finished {s['finished']} ({s['path']}/)")
        lines.append("    " + ", ".join(f"{k} {v:,}" for k, v in s["counts"].items()))
        lines.append("    files: " + ", ".join(s["files"]))
        lines += [f"    {line}" for line in reason_lines(s["ledger"])]
    return lines


RUN_COLUMNS = ("run", "state", "stages done", "last finished", "stage time (s)", "folder")
RUN_STATE = "run.json"  # in a run folder: how its last `workbench run` ended (`save_run_state`)


def save_run_state(run_dir: str | Path, state: str) -> None:
    """What `runs list` says of a run: "running", "complete", "complete up to dedup", "waiting: review ...",
    "stopped: <error>", "interrupted"; the stage folders alone cannot tell a run waiting for review from a whole
    one."""
    atomic_write_json(Path(run_dir) / RUN_STATE, {"state": state, "updated": _now()})


def run_state(run_dir: str | Path) -> str:
    try:
        return json.loads((Path(run_dir) / RUN_STATE).read_text(encoding="utf-8"))["state"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"  # a run folder from before the state was kept, or one written by hand


def run_rows(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The runs of `list_runs` as table rows under RUN_COLUMNS."""
    return [(r["run"], r["state"], f"{r['done']}/{r['stages']}", r["last"], f"{r['seconds']:.1f}", r["path"])
            for r in runs]


def list_runs(runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """The runs in a runs folder: name, stages done, last activity, total stage time."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir}: no runs folder here", hint="runs are made by `workbench demo` (runs/demo)")
    runs = []
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        stages = stage_summaries(folder)
        if stages:
            runs.append({"run": folder.name, "path": str(folder), "state": run_state(folder), "stages": len(stages),
                         "done": sum(s["status"] == "done" for s in stages),
                         "last": max(s["finished"] or "" for s in stages),
                         "seconds": round(sum(s["seconds"] or 0 for s in stages), 1)})
    return runs

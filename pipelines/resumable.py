"""Append-only outputs for the generation stages, so that a run killed at any point (even kill -9) continues where
it stopped when the same command runs again: no record lost, none duplicated.

A generation stage writes records.jsonl (kept), dropped.jsonl and ledger.jsonl (through its ledger) and
state.json. After each batch the records and the ledger's drops and events are appended, flushed and fsynced,
and only then is the state (byte offsets of every output, the loop's position, the RNG state, token usage)
replaced atomically. On resume every output is cut back to the offsets in the state, so a batch half-written
before a kill is written again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.core.io import atomic_write_json, load_records, sha256_file
from workbench.core.ledger import Ledger
from workbench.core.records import Record
from workbench.core.runs import Outputs, StepResult

FILES = ("records.jsonl", "dropped.jsonl", "ledger.jsonl")


def refuse_unappendable(*paths: Path | None) -> None:
    """Generation appends batch by batch: an output named .parquet, .json or .gz would hold JSON lines. Commands
    call this before loading a model, the stage again before writing."""
    for path in paths:
        if path is not None and Path(path).suffix != ".jsonl":
            raise InputError(f"{path}: a generation stage writes JSON lines, appended to as it goes",
                             hint="name it NAME.jsonl (`workbench data import NAME.jsonl -o NAME.parquet` converts)")


class ResumableOutput:
    """A generation stage's outputs, appended batch by batch, and the state that goes with them."""

    def __init__(self, out: Outputs, key: str, ledger: Ledger, force: bool = False):
        self.out, self.key, self.ledger = out, key, ledger
        self.paths = {name: out[name] for name in FILES}
        refuse_unappendable(*self.paths.values())
        self.state_file = out["state.json"]
        self.state: dict[str, Any] = {}
        self.resumed = False  # an earlier run of the same settings had written something
        self._start(force)

    def _start(self, force: bool) -> None:
        existing = [p for p in self.paths.values() if p.exists()]
        if force or not (existing or self.state_file.exists()):
            for path in self.paths.values():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            self.state = {"key": self.key, "offsets": {n: 0 for n in FILES}, "done": False}
            atomic_write_json(self.state_file, self.state)
            self.ledger.written = True  # its files exist from here on: finish appends, never replaces
            return
        if not self.state_file.exists():
            raise InputError(f"{existing[0]} exists and was not written by this command",
                             hint="use --force to replace it, or choose another output")
        self.state = json.loads(self.state_file.read_text(encoding="utf-8"))
        if self.state.get("key") != self.key:
            raise InputError(f"{self.paths['records.jsonl']} was started with other settings or inputs",
                             hint="rerun with the same settings to continue, --force to start again, "
                                  "or choose another output")
        for name, path in self.paths.items():
            # Cut back to the last whole batch; whatever follows was written by a run that was killed. Shorter than
            # the last batch's end, or (a finished run) not the bytes it wrote, the file was changed since: resuming
            # would build on what is not there (truncate would even pad it with NUL bytes).
            size, offset = path.stat().st_size, self.state["offsets"].get(name, 0)
            written = self.state.get("sha256", {}).get(name)
            changed = size < offset or (written is not None and size == offset and sha256_file(path) != written)
            if changed:
                raise InputError(f"{path}: changed since this command wrote it ({size:,} bytes; it had written "
                                 f"{offset:,}{'' if size != offset else ', other bytes'}): it cannot be resumed",
                                 hint="--force starts again; or restore the file")
            with open(path, "ab") as f:
                f.truncate(offset)
        self.ledger.resume(self.paths["ledger.jsonl"])
        self.resumed = any(self.state["offsets"].values())

    def read(self) -> list[Record]:
        """The records kept so far (on resume: everything before the kill)."""
        return load_records(self.paths["records.jsonl"], [])

    def append(self, kept: Iterable[Record], **state: Any) -> None:
        """Append one batch (the kept records, and what the ledger holds), make it durable, then save the state."""
        files = {name: open(path, "a", encoding="utf-8", newline="\n") for name, path in self.paths.items()}
        try:
            files["records.jsonl"].writelines(record.to_json() + "\n" for record in kept)
            self.ledger.write(files["dropped.jsonl"], files["ledger.jsonl"])
            offsets = {}
            for name, f in files.items():
                f.flush()
                os.fsync(f.fileno())
                offsets[name] = f.tell()
        finally:
            for f in files.values():
                f.close()
        self.state = {**self.state, **state, "offsets": offsets}
        atomic_write_json(self.state_file, self.state)

    def finish(self, usage: Counter, problems: list, **details: Any) -> StepResult:
        """Mark the run complete and write the manifest: kept and rejected counts over the whole run."""
        self.state = {**self.state, "done": True}
        atomic_write_json(self.state_file, self.state)
        counts = {"kept": _lines(self.paths["records.jsonl"]), "rejected": _lines(self.paths["dropped.jsonl"]),
                  **dict(usage)}
        result = self.out.finish(self.ledger, counts, problems, **details)
        # What the finished run wrote, byte for byte: a rerun that finds other bytes says so (`_start`).
        self.state = {**self.state, "offsets": {name: path.stat().st_size for name, path in self.paths.items()},
                      "sha256": {name: sha256_file(path) for name, path in self.paths.items()}}
        atomic_write_json(self.state_file, self.state)
        return result


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)

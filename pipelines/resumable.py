"""Append-only JSONL outputs with a state file, so a generation run killed at any point (even kill -9)
continues where it stopped when the same command runs again: no record lost, none duplicated.

After each batch the records are appended, flushed and fsynced, and only then is the state (byte offsets
of every output, the loop's position, the RNG state, token usage) replaced atomically. On resume every
output is cut back to the offsets in the state, so a batch half-written before a kill is written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.core.io import atomic_write_text, load_records
from workbench.core.records import Record


@dataclass
class GenerationResult:
    """What a generation run made, in all (a resumed run counts what earlier runs wrote too)."""

    kept: int = 0
    rejected: int = 0
    rounds: int = 0
    resumed: bool = False
    reasons: Counter = field(default_factory=Counter)
    usage: dict[str, int] = field(default_factory=dict)


def records_fingerprint(records: Iterable[Record]) -> str:
    """sha256 over the records' ids: part of a run's key, so other inputs never continue its output."""
    return hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest()


def run_key(config_digest: str, inputs_digest: str, backend) -> str:
    return hashlib.sha256(f"{config_digest} {inputs_digest} {backend.backend} {backend.name}".encode()).hexdigest()


def state_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(output.suffix) + ".state.json")


class ResumableOutput:
    """Named append-only outputs (e.g. records and rejected) and the state that goes with them."""

    def __init__(self, outputs: dict[str, Path], key: str, force: bool = False):
        self.outputs = {name: Path(path) for name, path in outputs.items()}
        self.state_file = state_path(self.outputs["records"])
        self.key = key
        self.state: dict[str, Any] = {}
        self._start(force)

    def _start(self, force: bool) -> None:
        existing = [p for p in self.outputs.values() if p.exists()]
        if force or not (existing or self.state_file.exists()):
            for path in self.outputs.values():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            self.state = {"key": self.key, "offsets": {n: 0 for n in self.outputs}, "done": False}
            atomic_write_text(self.state_file, json.dumps(self.state) + "\n")
            return
        if not self.state_file.exists():
            raise InputError(f"{existing[0]} exists and was not written by this command",
                             hint="use --force to replace it, or choose another output")
        self.state = json.loads(self.state_file.read_text(encoding="utf-8"))
        if self.state.get("key") != self.key:
            raise InputError(f"{self.outputs['records']} was started with other settings or inputs",
                             hint="rerun with the same settings to continue, --force to start again, "
                                  "or choose another output")
        for name, path in self.outputs.items():
            # Cut back to the last whole batch; whatever follows was written by a run that was killed.
            with open(path, "ab") as f:
                f.truncate(self.state["offsets"][name])

    @property
    def done(self) -> bool:
        return bool(self.state.get("done"))

    def read(self, name: str = "records") -> list[Record]:
        """The records already written to output `name` (on resume: everything before the kill)."""
        return load_records(self.outputs[name], [])

    def append(self, batches: dict[str, Iterable[Record]], **state: Any) -> None:
        """Append one batch to each output, make it durable, then record the new state."""
        offsets = dict(self.state["offsets"])
        for name, records in batches.items():
            with open(self.outputs[name], "a", encoding="utf-8", newline="\n") as f:
                for record in records:
                    f.write(record.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
                offsets[name] = f.tell()
        self.state = {**self.state, **state, "offsets": offsets}
        atomic_write_text(self.state_file, json.dumps(self.state) + "\n")

    def finish(self, result: GenerationResult, usage: Counter) -> GenerationResult:
        """Mark the run complete and fill `result` from what the outputs now hold."""
        self.state = {**self.state, "done": True}
        atomic_write_text(self.state_file, json.dumps(self.state) + "\n")
        rejected = self.read("rejected")
        result.kept, result.rejected = len(self.read("records")), len(rejected)
        result.reasons = Counter(r.lineage[-1]["reason"] for r in rejected)
        result.usage = dict(usage)
        return result

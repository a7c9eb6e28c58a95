"""The ledger: the one place a stage says what it did to a record, and why.

Every lineage event after a record is made goes through a Ledger: `keep` (passed, no reason needed), `log` and
`edit` (changed, with a reason), `drop` (removed, with a reason). Each returns the record with the event appended to
its lineage; `drop` returns nothing, because a dropped record goes on only in the ledger's dropped file. Every event
that has a reason is also one line of ledger.jsonl ({record_id, stage, action, reason}) and counted as
"action: reason" for the stage's manifest, which `workbench runs show`, `workbench trace` and the dataset card read.

Events and dropped records wait in memory until `write` appends them to open files: `Outputs.finish` does it at
the end of a stage; resumable generation does it after every batch and dedup's workers once per part of the file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any

from workbench.core.records import Record


class Ledger:
    """What one run of a stage did to records: events with reasons, dropped records, counts by reason."""

    def __init__(self, stage: str, run: str | None = None):
        self.stage = stage
        self.run = run
        self.counts: Counter = Counter()
        self.events: list[dict[str, Any]] = []  # not yet written
        self.dropped: list[Record] = []  # not yet written
        self.written = False  # `write` has appended to the files already (streamed, resumed or in parts)

    def log(self, record: Record, action: str, reason: str | None = None, detail: Any = None,
            **changes: Any) -> Record:
        """The record with this event in its lineage (and `changes` applied); counted when it has a reason."""
        if reason is not None:
            self.events.append({"record_id": record.id, "stage": self.stage, "action": action, "reason": reason})
            self.counts[f"{action}: {reason}"] += 1
        return record.with_event(self.stage, action, reason, detail, self.run, **changes)

    def keep(self, record: Record, detail: Any = None, **changes: Any) -> Record:
        return self.log(record, "keep", None, detail, **changes)

    def edit(self, record: Record, reason: str, detail: Any = None, **changes: Any) -> Record:
        return self.log(record, "edit", reason, detail, **changes)

    def drop(self, record: Record, reason: str, detail: Any = None) -> None:
        """Remove the record from the stage's output: it goes to the dropped file, with why in its lineage."""
        self.dropped.append(self.log(record, "drop", reason, detail))

    @property
    def pending(self) -> bool:
        return bool(self.events or self.dropped)

    def write(self, dropped: IO[str], events: IO[str]) -> None:
        """Append what is waiting to the dropped-records and events files, and forget it."""
        dropped.writelines(record.to_json() + "\n" for record in self.dropped)
        events.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in self.events)
        self.dropped, self.events, self.written = [], [], True

    def merge(self, counts: Counter | dict[str, int]) -> None:
        """Counts of events another ledger wrote to the same files (a worker's part, an earlier run's batches)."""
        self.counts.update(counts)
        self.written = True

    def resume(self, events_file: Path) -> None:
        """Count the events an earlier, interrupted run of the same stage wrote (they stay in the file)."""
        if events_file.exists():
            with open(events_file, encoding="utf-8") as f:
                self.merge(Counter(f"{e['action']}: {e['reason']}" for e in map(json.loads, f) if e))

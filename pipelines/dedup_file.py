"""Dedup of a record file at scale: two streaming passes in parallel processes, no Record kept in memory.

Pass 1 (workers, one byte range of the file each): read and validate lines, shingle, hash and sign the
texts; the main process keeps only ids, lengths, shingle hashes and signatures. Then candidates, exact
verification and clusters (pipelines.dedup). Pass 2 (workers again): read the ranges once more and write the
kept and removed records to part files, which are joined into the outputs atomically. The decisions are the
same as `pipelines.dedup.run` on the same records.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dedup import (
    SEED_SOURCES,
    DedupConfig,
    Plan,
    Shingled,
    cluster_line,
    decide,
    find_duplicates,
    record_text,
    shingle_texts,
    signatures,
)
from workbench.core.io import Problem, atomic_open, line_ranges, read_json_range, records_from_objects
from workbench.core.records import Record


@dataclass
class Scanned:
    """Pass 1 over one byte range: what dedup needs of its valid records."""

    ids: list[str]
    lines: list[int]
    explicit: list[bool]  # the id was given in the file (not computed from the texts)
    lengths: list[int]
    seedlike: list[bool]
    problems: list[Problem]
    shingled: Shingled
    sigs: np.ndarray


@dataclass
class DedupFileResult:
    records: int = 0
    kept: int = 0
    removed: int = 0
    problems: list[Problem] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    candidates: int = 0


_PLAN: dict = {}  # set before pass 2's workers are forked: they inherit it


def _records(path: str, start: int, end: int, line: int, problems: list[Problem],
             max_field_bytes: int) -> list[tuple[int, Record, dict]]:
    """(line, record, object) of each valid line; ids are checked within the range here, across the file later."""
    seen: dict[str, str] = {}
    found = []
    for row in read_json_range(path, start, end, line, problems):
        for record in records_from_objects(path, [row], problems, seen_ids=seen, max_field_bytes=max_field_bytes):
            found.append((row[0], record, row[1]))
    return found


def _scan(task: tuple) -> Scanned:
    path, start, end, line, config, max_field_bytes = task
    problems: list[Problem] = []
    rows = _records(path, start, end, line, problems, max_field_bytes)
    texts = [record_text(r, config.fields) for _, r, _ in rows]
    shingled = shingle_texts(texts, config.ngram)
    return Scanned([r.id for _, r, _ in rows], [n for n, _, _ in rows], [bool(o.get("id")) for _, _, o in rows],
                   [len(t) for t in texts], [r.source in SEED_SOURCES for _, r, _ in rows], problems, shingled,
                   signatures(shingled, config.num_perm, config.seed))


def _write(task: tuple) -> tuple[int, int, Counter]:
    path, start, end, line, first_index, kept_part, dropped_part, max_field_bytes = task
    plan, ids, excluded, run = _PLAN["plan"], _PLAN["ids"], _PLAN["excluded"], _PLAN["run"]
    kept = dropped = 0
    reasons: Counter = Counter()
    with open(kept_part, "w", encoding="utf-8") as keep_file, open(dropped_part, "w", encoding="utf-8") as drop_file:
        for offset, (_, record, _) in enumerate(_records(path, start, end, line, [], max_field_bytes)):
            index = first_index + offset
            if excluded[index]:
                continue  # quarantined in pass 1 (an id seen earlier in the file)
            decided, reason = decide(record, index, plan, ids, run)
            if reason is None:
                keep_file.write(decided.to_json() + "\n")
                kept += 1
            else:
                drop_file.write(decided.to_json() + "\n")
                reasons[f"drop: {reason}"] += 1
                dropped += 1
    return kept, dropped, reasons


def _pool(workers: int):
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork").Pool(workers)
    return None


def _map(pool, fn, tasks):
    return pool.map(fn, tasks) if pool is not None else [fn(t) for t in tasks]


def dedup_file(source: str | Path, output: str | Path, config: DedupConfig, rejected: str | Path,
               clusters: str | Path | None = None, references: list[Path] = (), run: str | None = None,
               max_field_bytes: int = 1_000_000, plan_out: list[Plan] | None = None) -> DedupFileResult:
    """Deduplicate SOURCE into OUTPUT (kept) and REJECTED (removed, with lineage); bad lines are returned
    as problems, never written to the outputs. References are read whole (they are usually small)."""
    source = str(source)
    result = DedupFileResult()
    ranges = line_ranges(source, max(1, config.workers * 4))
    tasks = [(source, s, e, line, config, max_field_bytes) for s, e, line in ranges]
    pool = _pool(config.workers)
    try:
        scanned = _map(pool, _scan, tasks)
    finally:
        if pool is not None:
            pool.close()
    refs = [_scan((str(p), s, e, line, config, max_field_bytes)) for p in references for s, e, line in
            line_ranges(p, 1)]
    ids = [i for part in scanned for i in part.ids]
    result.problems = [p for part in [*scanned, *refs] for p in part.problems]
    excluded = _repeated_ids(source, scanned, result.problems)
    result.problems.sort(key=lambda p: p.line)
    everything = [*scanned, *refs]
    shingled = Shingled.join([p.shingled for p in everything])
    sigs = np.concatenate([p.sigs for p in everything]) if everything else np.empty((0, config.num_perm), np.uint32)
    plan = find_duplicates(shingled, config, len(ids), [n for p in everything for n in p.lengths],
                           [s for p in everything for s in p.seedlike], sigs, excluded=excluded)
    result.records, result.candidates = len(ids) - int(excluded.sum()), plan.candidates
    if plan_out is not None:
        plan_out.append(plan)
    all_ids = ids + [i for part in refs for i in part.ids]
    _write_outputs(source, ranges, scanned, plan, all_ids, excluded, config, output, rejected, run,
                   max_field_bytes, result)
    if clusters is not None:
        with atomic_open(clusters) as f:
            for index in sorted(plan.removed):
                f.write(json.dumps(cluster_line(index, plan, all_ids)) + "\n")
    return result


def _repeated_ids(source: str, scanned: list[Scanned], problems: list[Problem]) -> np.ndarray:
    """Ids repeated across ranges (each range checked its own): the later ones are quarantined with the
    same reasons one reader of the whole file gives."""
    first: dict[str, int] = {}
    excluded = []
    for part in scanned:
        for record_id, line, explicit in zip(part.ids, part.lines, part.explicit):
            if record_id in first:
                where = f"{source}:{first[record_id]}"
                reason = (f"duplicate id {record_id!r} (first at {where})" if explicit
                          else f"exact duplicate of {where} (same instruction, context and response)")
                problems.append(Problem(source, line, "id" if explicit else "-", reason))
            first.setdefault(record_id, line)
            excluded.append(first[record_id] != line)
    return np.array(excluded, dtype=bool)


def _write_outputs(source: str, ranges, scanned: list[Scanned], plan: Plan, ids: list[str], excluded: np.ndarray,
                   config: DedupConfig, output, rejected, run, max_field_bytes: int,
                   result: DedupFileResult) -> None:
    firsts = np.concatenate([[0], np.cumsum([len(p.ids) for p in scanned])[:-1]]).astype(int).tolist()
    parts_dir = Path(tempfile.mkdtemp(prefix=".dedup-parts-", dir=Path(output).parent))
    try:
        tasks = [(source, s, e, line, first, parts_dir / f"k{n}", parts_dir / f"d{n}", max_field_bytes)
                 for n, ((s, e, line), first) in enumerate(zip(ranges, firsts))]
        _PLAN.update(plan=plan, ids=ids, excluded=excluded, run=run)
        pool = _pool(config.workers)
        try:
            counts = _map(pool, _write, tasks)
        finally:
            _PLAN.clear()
            if pool is not None:
                pool.close()
        for target, prefix in ((output, "k"), (rejected, "d")):
            with atomic_open(target, "wb") as out:
                for n in range(len(tasks)):
                    with open(parts_dir / f"{prefix}{n}", "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
        result.kept = sum(k for k, _, _ in counts)
        result.removed = sum(d for _, d, _ in counts)
        for _, _, reasons in counts:
            result.reasons.update(reasons)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)

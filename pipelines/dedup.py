"""The dedup stage: near-duplicates removed from record files, in two streaming passes over worker processes, with
no Record held in memory (the engine is `workbench.core.minhash`).

Pass 1 (workers, one byte range of a file each): read and validate lines, shingle, hash and sign the texts; the main
process keeps only ids, lengths, shingle hashes and signatures. Then candidates, exact verification and clusters.
Pass 2 (workers again): read the ranges once more; each worker's ledger keeps or drops every record of its range and
writes its part files, which are joined in order into records.jsonl, dropped.jsonl and ledger.jsonl, each atomically.
`workbench dedup` and a recipe's dedup stage both run `run`; several input files are deduplicated as one.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipelines.dedup_index import RedisIndex
from workbench.core.errors import InputError
from workbench.core.fingerprint import config_hash, path_sha256
from workbench.core.io import (
    Problem,
    atomic_open,
    is_gzip,
    is_json_array,
    json_array_rows,
    line_ranges,
    load_records,
    parquet_rows,
    read_json_range,
    records_from_objects,
    write_records,
)
from workbench.core.ledger import Ledger
from workbench.core.minhash import (
    SEED_SOURCES,
    DedupConfig,
    Plan,
    Shingled,
    cluster_line,
    cluster_plan,
    find_duplicates,
    record_text,
    shingle_texts,
    signatures,
)
from workbench.core.records import DEFAULT_MAX_FIELD_BYTES, Record
from workbench.core.runs import Outputs, StepResult

__all__ = ["DedupConfig", "SPEED_ONLY", "ThresholdRow", "preview", "run"]

SPEED_ONLY = frozenset({"workers"})  # config fields that do not change which records are removed


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


Range = tuple[str, int, int, int]  # (file, first byte, end byte, number of its first line)
_PLAN: dict = {}  # set before pass 2's workers are forked: they inherit it


def _records(part: Range, problems: list[Problem], max_field_bytes: int) -> list[tuple[int, Record, dict]]:
    """(line, record, object) of each valid line; ids are checked within the range here, across the files later."""
    path, start, end, line = part
    seen: dict[str, str] = {}
    found = []
    for row in read_json_range(path, start, end, line, problems):
        for record in records_from_objects(path, [row], problems, seen_ids=seen, max_field_bytes=max_field_bytes):
            found.append((row[0], record, row[1]))
    return found


def _scan(task: tuple[Range, DedupConfig, int]) -> Scanned:
    part, config, max_field_bytes = task
    problems: list[Problem] = []
    rows = _records(part, problems, max_field_bytes)
    texts = [record_text(r, config.fields) for _, r, _ in rows]
    shingled = shingle_texts(texts, config.ngram)
    return Scanned([r.id for _, r, _ in rows], [n for n, _, _ in rows], [bool(o.get("id")) for _, _, o in rows],
                   [len(t) for t in texts], [r.source in SEED_SOURCES for _, r, _ in rows], problems, shingled,
                   signatures(shingled, config.num_perm, config.seed))


def _decide(record: Record, index: int, plan: Plan, ids: list[str], ledger: Ledger,
            reference_reasons: list[str]) -> Record | None:
    """The record kept (its cluster size in meta and lineage) or dropped through the ledger (None)."""
    if plan.kept[index]:
        size = plan.cluster_size[index]
        return ledger.keep(record, {"cluster_size": size}, meta={**record.meta, "dedup_cluster_size": size})
    line = cluster_line(index, plan, ids)
    duplicate_of = plan.removed[index]["duplicate_of"]
    reason = reference_reasons[duplicate_of - plan.n_records] if duplicate_of >= plan.n_records else "near-duplicate"
    ledger.drop(record, reason, {k: v for k, v in line.items() if k != "id"})
    return None


def _write(task: tuple[Range, int, Path, int]) -> tuple[int, Counter]:
    """Pass 2 over one range: kept records to PART.k, dropped ones and the ledger's events to PART.d and PART.e."""
    part, first_index, prefix, max_field_bytes = task
    plan, ids, excluded, run = _PLAN["plan"], _PLAN["ids"], _PLAN["excluded"], _PLAN["run"]
    reasons = _PLAN["reference_reasons"]
    ledger, kept = Ledger("dedup", run), 0
    with open(f"{prefix}.k", "w", encoding="utf-8") as keep_file:
        for offset, (_, record, _) in enumerate(_records(part, [], max_field_bytes)):
            index = first_index + offset
            if excluded[index]:
                continue  # quarantined in pass 1 (an id seen earlier)
            decided = _decide(record, index, plan, ids, ledger, reasons)
            if decided is not None:
                keep_file.write(decided.to_json() + "\n")
                kept += 1
    with open(f"{prefix}.d", "w", encoding="utf-8") as dropped, open(f"{prefix}.e", "w", encoding="utf-8") as events:
        ledger.write(dropped, events)
    return kept, ledger.counts


def _pool(workers: int):
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork").Pool(workers)
    return None


def _map(workers: int, fn, tasks: list) -> list:
    pool = _pool(workers)
    if pool is None:
        return [fn(t) for t in tasks]
    try:
        return pool.map(fn, tasks)
    finally:
        pool.close()


def run(sources: list[Path], config: DedupConfig, out: Outputs, references: list[Path] = (),
        max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES, index: str | None = None,
        against_indexes: Sequence[str] = (), say: Callable[[str], None] | None = None) -> StepResult:
    """Deduplicate the records of SOURCES (as one set, in order) into out["records.jsonl"]; removed records go to
    out["dropped.jsonl"] with why in their lineage, one line each to out["clusters.jsonl"]. Records that match a
    reference (read whole: usually small) are removed too; references are never deduplicated among themselves.
    `index`: a named index in Redis (`pipelines.dedup_index`) the records are also deduplicated against, and the
    kept ones added to, under its lock; `against_indexes`: named indexes only deduplicated against."""
    sources, references = [Path(p) for p in sources], [Path(p) for p in references]
    if index and index in against_indexes:
        raise InputError(f"index {index!r} is both --index and --against-index: --index is deduplicated against too")
    ledger = out.start(config, [*sources, *references], SPEED_ONLY)  # refuses bad outputs before an index is made
    adding = RedisIndex(index, config, create=True) if index else None
    reading = [RedisIndex(name, config) for name in dict.fromkeys(against_indexes)]
    work = Path(tempfile.mkdtemp(prefix=".dedup-", dir=out["records.jsonl"].parent))
    try:
        problems: list[Problem] = []
        array_lines: dict[str, list[int]] = {}
        readable = {p: _json_lines(p, work, problems, array_lines) for p in [*sources, *references]}
        parts = [(str(readable[p]), s, e, line) for p in sources
                 for s, e, line in line_ranges(readable[p], max(1, config.workers * 4))]
        scanned = _map(config.workers, _scan, [(part, config, max_field_bytes) for part in parts])
        refs = [_scan(((str(readable[p]), s, e, line), config, max_field_bytes)) for p in references
                for s, e, line in line_ranges(readable[p], 1)]
        named = {str(path): str(original) for original, path in readable.items()}  # a Parquet file by its own name
        starts = {named[path]: lines for path, lines in array_lines.items()}

        def line_of(file: str, line: int) -> int:  # a JSON array's element by the line it starts on
            return starts[file][line - 1] if file in starts else line

        problems += [replace(p, file=named[p.file], line=line_of(named[p.file], p.line))
                     for part in [*scanned, *refs] for p in part.problems]
        excluded = _repeated_ids([(named[path], *rest) for path, *rest in parts], scanned, problems, line_of)
        order = {str(p): k for k, p in enumerate(readable)}
        problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
        ids = [i for part in scanned for i in part.ids]
        named = ([adding] if adding is not None else []) + reading
        own = Shingled.join([p.shingled for p in scanned])
        own_sigs = np.concatenate([p.sigs for p in scanned]) if scanned else np.empty((0, config.num_perm), np.uint32)
        for ix in reading:
            ix.ensure_whole(say)
        with adding.locked(say) if adding is not None else nullcontext():  # from query to add: one run at a time
            batch = _batch(sources, config)
            reasons = ["near-duplicate of a reference"] * sum(len(r.ids) for r in refs)  # one per reference
            for ix in named:
                ref_ids, found, found_sigs = ix.references(own_sigs, (own.sizes() == 0) | excluded, batch)
                n = len(ref_ids)
                refs.append(Scanned(ref_ids, [0] * n, [True] * n, [0] * n, [False] * n, [], found, found_sigs))
                reasons += [f"near-duplicate of a record in index {ix.name}"] * len(refs[-1].ids)
            everything = [*scanned, *refs]
            sigs = np.concatenate([p.sigs for p in everything]) if everything else np.empty((0, config.num_perm),
                                                                                           np.uint32)
            plan = find_duplicates(Shingled.join([p.shingled for p in everything]), config, len(ids),
                                   [n for p in everything for n in p.lengths],
                                   [s for p in everything for s in p.seedlike], sigs, excluded=excluded)
            all_ids = ids + [i for part in refs for i in part.ids]
            kept, removed = _write_outputs(parts, scanned, plan, all_ids, excluded, config, out, ledger,
                                           max_field_bytes, work, reasons)
            if adding is not None:
                keep = [i for i in range(len(ids)) if plan.kept[i] and not excluded[i]]
                adding.add([ids[i] for i in keep], [own.set(i) for i in keep], own_sigs[keep], batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with atomic_open(out["clusters.jsonl"]) as f:
        for index in sorted(plan.removed):
            f.write(json.dumps(cluster_line(index, plan, all_ids)) + "\n")
    counts = {"in": len(ids) - int(excluded.sum()), "out": kept, "removed": removed, "candidates": plan.candidates}
    details = {"index": {"name": adding.name, "records": len(adding)}} if adding is not None else {}
    if reading:
        details["against_indexes"] = {ix.name: len(ix) for ix in reading}
    return out.finish(ledger, counts, problems, **details)


def _batch(sources: list[Path], config: DedupConfig) -> str:
    """What identifies a run's input for a named index: its files' contents and the settings of the dedup."""
    import hashlib

    settings = config_hash(config, SPEED_ONLY | {"storage", "redis_url", "redis_prefix"})
    return hashlib.sha256(":".join([settings, *(path_sha256(p) for p in sources)]).encode()).hexdigest()[:32]


def _json_lines(path: Path, work: Path, problems: list[Problem], lines: dict[str, list[int]]) -> Path:
    """A Parquet file's rows (row N on line N; an unreadable row is a blank line and a problem), a JSON array's
    elements (one per line; `lines` maps each back to the line it starts on) or a gzip file's lines as JSON lines
    in WORK, so that the byte-range readers can split it; a JSON lines file as it is."""
    target = work / f"{len(list(work.glob('*.jsonl')))}.jsonl"
    if is_json_array(path):
        with open(target, "w", encoding="utf-8") as f:
            starts = lines.setdefault(str(target), [])
            for number, obj, _ in json_array_rows(path, problems):
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
                starts.append(number)
        return target
    if is_gzip(path):
        with gzip.open(path, "rb") as packed, open(target, "wb") as f:
            try:
                shutil.copyfileobj(packed, f, 1 << 20)
            except (OSError, EOFError) as e:
                raise InputError(f"{path}: a damaged gzip file: {e}") from None
        return target
    if path.suffix != ".parquet":
        return path
    with open(target, "w", encoding="utf-8") as f:
        line = 0
        for number, _, raw in parquet_rows(path, problems):
            f.write("\n" * (number - line - 1) + raw + "\n")
            line = number
    return target


def _repeated_ids(parts: list[Range], scanned: list[Scanned], problems: list[Problem],
                  line_of: Callable[[str, int], int]) -> np.ndarray:
    """Ids repeated across ranges or files (each range checked its own): the later ones are quarantined with the
    reasons one reader of all the files gives."""
    first: dict[str, tuple[str, int]] = {}
    excluded = []
    for (path, *_), part in zip(parts, scanned):
        for record_id, line, explicit in zip(part.ids, part.lines, part.explicit):
            if record_id in first:
                where = f"{first[record_id][0]}:{line_of(*first[record_id])}"
                reason = (f"duplicate id {record_id!r} (first at {where})" if explicit
                          else f"exact duplicate of {where} (same instruction, context and response)")
                problems.append(Problem(path, line_of(path, line), "id" if explicit else "-", reason))
            excluded.append(first.setdefault(record_id, (path, line)) != (path, line))
    return np.array(excluded, dtype=bool)


def _write_outputs(parts: list[Range], scanned: list[Scanned], plan: Plan, ids: list[str], excluded: np.ndarray,
                   config: DedupConfig, out: Outputs, ledger: Ledger, max_field_bytes: int,
                   work: Path, reference_reasons: list[str]) -> tuple[int, int]:
    """Pass 2: each worker writes its range's part files into WORK; they are joined in order into the outputs."""
    firsts = np.concatenate([[0], np.cumsum([len(p.ids) for p in scanned])[:-1]]).astype(int).tolist()
    tasks = [(part, first, work / f"part{n}", max_field_bytes) for n, (part, first) in enumerate(zip(parts, firsts))]
    _PLAN.update(plan=plan, ids=ids, excluded=excluded, run=out.run, reference_reasons=reference_reasons)
    try:
        results = _map(config.workers, _write, tasks)
    finally:
        _PLAN.clear()
    records = out["records.jsonl"]
    # Kept records named NAME.parquet, NAME.json or NAME.jsonl.gz are joined as JSON lines in WORK first, then
    # written as the name says.
    joined_records = work / "kept.jsonl" if records.suffix in (".parquet", ".json", ".gz") else records
    for target, suffix in ((joined_records, "k"), (out["dropped.jsonl"], "d"), (out["ledger.jsonl"], "e")):
        with atomic_open(target, "wb") as joined:
            for n in range(len(tasks)):
                with open(work / f"part{n}.{suffix}", "rb") as part:
                    shutil.copyfileobj(part, joined, 1 << 20)
    if joined_records != records:
        write_records(records, load_records(joined_records, []))
    for _, counts in results:
        ledger.merge(counts)
    return sum(k for k, _ in results), sum(n for k, n in ledger.counts.items() if k.startswith("drop: "))


@dataclass
class ThresholdRow:
    threshold: float
    removed: int
    examples: list[tuple[str, str, float]]  # pairs with similarity in [threshold, next threshold)


def parse_thresholds(text: str) -> list[float]:
    """'0.5,0.6,0.7' -> [0.5, 0.6, 0.7]."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise InputError(f"{text!r}: thresholds are Jaccard similarities in (0, 1]")
    return values


def preview(sources: list[Path], config: DedupConfig, thresholds: list[float], references: list[Path] = (),
            examples: int = 3) -> tuple[list[ThresholdRow], list[Problem]]:
    """How many records each threshold would remove, with example pairs per band; nothing is written."""
    problems: list[Problem] = []
    records = [r for source in sources for r in load_records(source, problems)]
    everything = records + [r for path in references for r in load_records(path, problems)]
    thresholds = sorted(thresholds)
    texts = [record_text(r, config.fields) for r in everything]
    lowest = config.model_copy(update={"threshold": thresholds[0]})
    plan = find_duplicates(shingle_texts(texts, config.ngram), lowest, len(records))
    lengths = [len(t) for t in texts]
    seedlike = [r.source in SEED_SOURCES for r in everything]
    rows = []
    for k, threshold in enumerate(thresholds):
        upper = thresholds[k + 1] if k + 1 < len(thresholds) else 1.01
        at = Plan(len(records), {p: s for p, s in plan.similarities.items() if s >= threshold})
        cluster_plan(at, len(everything), config, lengths, seedlike)
        band = [(texts[i], texts[j], s) for (i, j), s in sorted(plan.similarities.items(), key=lambda kv: kv[1])
                if threshold <= s < upper][:examples]
        rows.append(ThresholdRow(threshold, len(at.removed), band))
    return rows, problems

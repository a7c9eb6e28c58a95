"""Near-duplicate removal: MinHash LSH finds candidate pairs, exact Jaccard decides, union-find clusters.

Definitions (so that anyone can reproduce a result):
- text = the `fields` of a record joined with one space;
- shingles = the set of word n-grams of `re.findall(r"\\w+", NFKC(text).lower())` (a text with fewer than n
  words has the one shingle of all its words; an empty text has none and is never a duplicate);
- two records are duplicates when the Jaccard similarity of their shingle sets is >= `threshold`.

LSH alone at the threshold misses pairs (measured: recall 0.845 at 0.7 on 20k documents), so the index is
built at a lower threshold and every candidate pair is verified exactly (recall 0.998, precision 1.0).
Shingles are compared as 64-bit xxhash values; two distinct shingles colliding is a 2^-64 event per pair.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from workbench.records import Record
from workbench.runs import Ledger

SEED_SOURCES = ("seed", "human")  # what --keep seed prefers


class DedupConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: tuple[str, ...] = ("instruction", "context")  # joined with one space
    ngram: int = Field(3, ge=1)  # word n-grams
    threshold: float = Field(0.7, gt=0, le=1)  # Jaccard at or above this: duplicates
    num_perm: int = Field(128, ge=16)  # MinHash permutations
    index_threshold: float | None = Field(None, gt=0, le=1)  # LSH threshold for candidates (default: 0.2 lower)
    keep: Literal["first", "longest", "seed"] = "first"  # which record of a cluster stays
    seed: int = 1  # MinHash permutation seed
    storage: Literal["memory", "redis"] = "memory"  # redis: datasketch's MinHashLSH with its Redis storage
    redis_url: str = "redis://127.0.0.1:6379/0"  # with storage redis
    redis_prefix: str = "workbench-dedup"  # keys are PREFIX:RUN-ID:..., deleted when the run ends


def shingles(text: str, n: int) -> set[str]:
    """The shingle set of `text` (the module docstring's definition)."""
    tokens = re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the shingles."""
    import xxhash

    return np.unique(np.fromiter((xxhash.xxh64_intdigest(s.encode()) for s in shingles(text, n)), dtype=np.uint64))


def record_text(record: Record, fields: tuple[str, ...]) -> str:
    return " ".join(str(getattr(record, f, "") or record.meta.get(f, "")) for f in fields)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique hash arrays."""
    if not len(a) or not len(b):
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiply-shift hash parameters: odd 64-bit a, 64-bit b (Dietzfelbinger et al. 1997)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def signatures(hash_sets: list[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (n_docs x num_perm, uint32) of many documents at once.

    Each permutation is h -> (a*h + b) mod 2^64 >> 32 (multiply-shift: no modulo, which numpy does slowly
    on uint64), vectorised over all shingles of a chunk, then the minimum per document with reduceat.
    """
    a, b = permutations(num_perm, seed)
    out = np.full((len(hash_sets), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    sizes = np.array([len(h) for h in hash_sets], dtype=np.int64)
    # Chunks of ~16k shingles: a reused 16 MB buffer, so no page faults on fresh allocations (measured:
    # allocating the whole product costs more than the arithmetic).
    budget, shift = 16_384, np.uint64(32)
    buffer = np.empty((budget, num_perm), dtype=np.uint64)
    start = 0
    while start < len(hash_sets):
        end, total = start, 0
        while end < len(hash_sets) and (total + sizes[end] <= budget or end == start):
            total += sizes[end]
            end += 1
        nonempty = start + np.flatnonzero(sizes[start:end])
        if len(nonempty) and total <= budget:
            flat = np.concatenate([hash_sets[i] for i in nonempty])[:, None]
            values = buffer[:total]
            with np.errstate(over="ignore"):
                np.multiply(flat, a, out=values)
                values += b
            values >>= shift
            offsets = np.concatenate([[0], np.cumsum(sizes[nonempty])[:-1]])
            out[nonempty] = np.minimum.reduceat(values, offsets, axis=0)
        elif len(nonempty):  # one document larger than the buffer
            with np.errstate(over="ignore"):
                out[nonempty[0]] = ((hash_sets[nonempty[0]][:, None] * a + b) >> shift).min(axis=0)
        start = end
    return out


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that minimise false positives + negatives around `threshold` (datasketch's choice)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int, empty: np.ndarray) -> np.ndarray:
    """Pairs (i < j) that share a band bucket: banding done with numpy sorts, no Python per document."""
    pairs = []
    index = np.flatnonzero(~empty)
    for band in range(bands):
        block = np.ascontiguousarray(sigs[index, band * rows:(band + 1) * rows])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
        ends = np.append(starts[1:], len(order))
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = np.sort(index[order[s:e]])
            i, j = np.triu_indices(len(members), k=1)
            pairs.append(np.stack([members[i], members[j]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def redis_candidate_pairs(sigs: np.ndarray, empty: np.ndarray, config: DedupConfig,
                          index_threshold: float) -> np.ndarray:
    """The same candidate pairs through datasketch's MinHashLSH with Redis storage (same bands, same
    buckets), for an index that lives outside this process. Its keys are removed afterwards."""
    import uuid

    import redis
    from datasketch import LeanMinHash, MinHashLSH

    from workbench.errors import WorkbenchError

    basename = f"{config.redis_prefix}:{uuid.uuid4().hex}"
    params = redis.connection.parse_url(config.redis_url)
    client = redis.Redis(**params)
    try:
        client.ping()
    except redis.RedisError as e:
        raise WorkbenchError(f"Redis at {config.redis_url}: {e}", hint="start Redis or use --storage memory") from None
    lsh = MinHashLSH(threshold=index_threshold, num_perm=config.num_perm,
                     storage_config={"type": "redis", "basename": basename.encode(), "redis": params})
    index = np.flatnonzero(~empty)
    try:
        # Our uint32 values travel in datasketch's uint32 layout ("affine32"); the index only bands them.
        minhashes = {int(i): LeanMinHash(seed=config.seed, hashvalues=sigs[i], scheme="affine32") for i in index}
        with lsh.insertion_session() as session:
            for i, minhash in minhashes.items():
                session.insert(i, minhash, check_duplication=False)
        pairs = {(min(i, int(j)), max(i, int(j))) for i, minhash in minhashes.items()
                 for j in lsh.query(minhash) if int(j) != i}
    finally:
        keys = list(client.scan_iter(match=f"{basename}*"))
        if keys:
            client.delete(*keys)
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


@dataclass
class Plan:
    """What dedup decided, by position in the input (references after the records)."""

    n_records: int
    similarities: dict[tuple[int, int], float] = field(default_factory=dict)  # verified pairs >= threshold
    kept: list[bool] = field(default_factory=list)
    cluster_size: list[int] = field(default_factory=list)
    removed: dict[int, dict] = field(default_factory=dict)  # index -> duplicate_of, linked_to, similarity
    candidates: int = 0


def find_duplicates(hash_sets: list[np.ndarray], config: DedupConfig, n_records: int | None = None,
                    lengths: list[int] | None = None, seedlike: list[bool] | None = None) -> Plan:
    """Cluster near-duplicates among the first `n_records` hash sets; the rest are references that are
    matched against but never removed or deduplicated among themselves."""
    n_records = len(hash_sets) if n_records is None else n_records
    empty = np.array([len(h) == 0 for h in hash_sets], dtype=bool)
    index_threshold = config.index_threshold or max(0.05, config.threshold - 0.2)
    sigs = signatures(hash_sets, config.num_perm, config.seed)
    if config.storage == "redis":
        pairs = redis_candidate_pairs(sigs, empty, config, index_threshold)
    else:
        pairs = candidate_pairs(sigs, *lsh_params(index_threshold, config.num_perm), empty)
    plan = Plan(n_records, candidates=len(pairs))
    for i, j in pairs.tolist():
        if i >= n_records and j >= n_records:
            continue  # two references: not deduplicated
        similarity = jaccard(hash_sets[i], hash_sets[j])
        if similarity >= config.threshold:
            plan.similarities[(i, j)] = similarity
    _cluster(plan, len(hash_sets), config, lengths or [0] * len(hash_sets), seedlike or [False] * len(hash_sets))
    return plan


def _cluster(plan: Plan, total: int, config: DedupConfig, lengths: list[int], seedlike: list[bool]) -> None:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components

    edges = np.array(list(plan.similarities), dtype=np.int64).reshape(-1, 2)
    weights = np.array(list(plan.similarities.values()))
    graph = coo_matrix((weights, (edges[:, 0], edges[:, 1])), shape=(total, total)).tocsr()
    graph = graph.maximum(graph.T)
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for node in range(total):
        members.setdefault(labels[node], []).append(node)
    plan.kept = [True] * plan.n_records
    plan.cluster_size = [1] * plan.n_records
    for nodes in members.values():
        if len(nodes) == 1:
            continue
        references = [n for n in nodes if n >= plan.n_records]
        records = [n for n in nodes if n < plan.n_records]
        root = references[0] if references else _choose(records, config.keep, lengths, seedlike)
        order, parents = breadth_first_order(graph, root, directed=False)
        for node in records:
            plan.cluster_size[node] = len(records)
            if node == root:
                continue
            plan.kept[node] = False
            parent = int(parents[node])
            plan.removed[node] = {"duplicate_of": root, "linked_to": parent,
                                  "similarity": plan.similarities[(min(node, parent), max(node, parent))]}


def _choose(nodes: list[int], keep: str, lengths: list[int], seedlike: list[bool]) -> int:
    if keep == "longest":
        return min(nodes, key=lambda n: (-lengths[n], n))
    if keep == "seed":
        return min(nodes, key=lambda n: (not seedlike[n], n))
    return min(nodes)


def run(records: Iterable[Record], config: DedupConfig, ledger: Ledger, references: Iterable[Record] = (),
        removed_out: list[dict] | None = None, dropped: list[Record] | None = None) -> Iterator[Record]:
    """Kept records, in input order, with meta.dedup_cluster_size; removed ones go to `dropped` with the
    reason in their lineage and one clusters line each in `removed_out`."""
    records, references = list(records), list(references)
    everything = records + references
    hash_sets = [shingle_hashes(record_text(r, config.fields), config.ngram) for r in everything]
    plan = find_duplicates(hash_sets, config, len(records),
                           [len(record_text(r, config.fields)) for r in everything],
                           [r.source in SEED_SOURCES for r in everything])
    for index, record in enumerate(records):
        if plan.kept[index]:
            meta = {**record.meta, "dedup_cluster_size": plan.cluster_size[index]}
            yield record.with_event("dedup", "keep", None, {"cluster_size": plan.cluster_size[index]}, ledger.run,
                                    meta=meta)
            continue
        info = plan.removed[index]
        line = {"id": record.id, "duplicate_of": everything[info["duplicate_of"]].id,
                "linked_to": everything[info["linked_to"]].id, "similarity": round(info["similarity"], 6)}
        reason = "near-duplicate of a reference" if info["duplicate_of"] >= len(records) else "near-duplicate"
        gone = ledger.drop(record, reason, {k: v for k, v in line.items() if k != "id"})
        if removed_out is not None:
            removed_out.append(line)
        if dropped is not None:
            dropped.append(gone)


@dataclass
class ThresholdRow:
    threshold: float
    removed: int
    examples: list[tuple[str, str, float]]  # pairs with similarity in [threshold, next threshold)


def dry_run(records: list[Record], config: DedupConfig, thresholds: list[float], examples: int = 3,
            references: Iterable[Record] = ()) -> list[ThresholdRow]:
    """How many records each threshold would remove, with example pairs per band; nothing is written."""
    thresholds = sorted(thresholds)
    everything = records + list(references)
    hash_sets = [shingle_hashes(record_text(r, config.fields), config.ngram) for r in everything]
    lowest = config.model_copy(update={"threshold": thresholds[0]})
    plan = find_duplicates(hash_sets, lowest, len(records))
    lengths = [len(record_text(r, config.fields)) for r in everything]
    seedlike = [r.source in SEED_SOURCES for r in everything]
    rows = []
    for k, threshold in enumerate(thresholds):
        upper = thresholds[k + 1] if k + 1 < len(thresholds) else 1.01
        at = Plan(len(records), {p: s for p, s in plan.similarities.items() if s >= threshold})
        _cluster(at, len(everything), config, lengths, seedlike)
        band = [(record_text(everything[i], config.fields), record_text(everything[j], config.fields), s)
                for (i, j), s in sorted(plan.similarities.items(), key=lambda kv: kv[1])
                if threshold <= s < upper][:examples]
        rows.append(ThresholdRow(threshold, len(at.removed), band))
    return rows

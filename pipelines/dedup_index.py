"""A named dedup index in Redis (`workbench dedup --index NAME`): records deduplicated once stay indexed, so that
later runs, on this machine or another, are deduplicated against them without reading the earlier files again.

Under the prefix PREFIX:index:NAME the index keeps
- `:lsh…`: datasketch's MinHashLSH with its Redis storage (the band buckets; keys are the records' ids);
- `:shingles`: a hash from each id to its shingle hashes (uint64, the bytes of a numpy array), for the exact Jaccard
  that decides every candidate, as within a run (`workbench.core.minhash`);
- `:batch`: a hash from each id to the batch that added it (the input files' and settings' hash): the same command
  run again finds its own records there and is not deduplicated against them, so it gives the same output again;
- `:meta`: what the index was built with (fields, n-gram, threshold, MinHash bins and seed): a run with other
  settings would compare other texts or other hashes, and is refused;
- `:pending`: the ids of a batch being added to the LSH buckets.

A batch is added in two steps: its shingles, batch marks and `:pending` ids in one MULTI/EXEC transaction, then
its LSH buckets (many keys, not one transaction), then `:pending` is cleared. A run killed in between (kill -9, a
lost connection) leaves either nothing of the batch or its records with their shingles and pending; the next use of
the index (under its lock) finishes those from their shingles before anything else. So an index is never left with
bucket entries that have no shingles (every later query would fail) nor records that no query can find.

A run that adds to an index holds its lock from the query to the add: two runs at once then give what one run over
both inputs, one after the other, gives (each record kept at most once over the index). The lock is renewed while
the holder works; a holder killed on this machine (its PID gone) has its lock taken over at once, one on another
machine when the lock expires (60 s).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from workbench.core.errors import ConfigError, InputError
from workbench.core.minhash import DedupConfig, Shingled, lsh_threshold, redis_client, signatures
from workbench.core.urls import masked

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
LOCK_SECONDS = 60  # the lock's lifetime, renewed every third of it while held


def index_settings(config: DedupConfig) -> dict:
    """What must match for records to be compared with an index's: the texts, their shingles and their hashes."""
    return {"fields": list(config.fields), "ngram": config.ngram, "threshold": config.threshold,
            "index_threshold": lsh_threshold(config),
            "num_perm": config.num_perm, "seed": config.seed}


class RedisIndex:
    """One named index; `create` makes it when it does not exist (else a missing one is an error). Its settings must
    be the run's, unless `check_settings` is off (to drop it)."""

    def __init__(self, name: str, config: DedupConfig, create: bool = False, check_settings: bool = True):
        from datasketch import MinHashLSH

        if not NAME.fullmatch(name):
            raise ConfigError(f"index name {name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
        self.name, self.config = name, config
        self.client, params = redis_client(config, "the dedup index lives in Redis: start it or give --redis-url")
        self.base = f"{config.redis_prefix}:index:{name}"
        settings = index_settings(config)
        stored = self.client.get(f"{self.base}:meta")
        if stored is None and not create:
            raise InputError(f"no dedup index {name!r} in Redis at {masked(config.redis_url)}",
                             hint="an index is made by `workbench dedup --index NAME` (which adds to it)")
        if stored is None:
            self.client.set(f"{self.base}:meta", json.dumps(settings), nx=True)
            stored = self.client.get(f"{self.base}:meta")
        built = json.loads(stored)
        changed = [f"{k} {built[k]} (this run: {settings[k]})" for k in settings if built.get(k) != settings[k]]
        if changed and check_settings:
            raise ConfigError(f"index {name!r} was built with other settings: {'; '.join(changed)}",
                              hint="dedup with the index's settings, or use another --index")
        self.lsh = MinHashLSH(threshold=settings["index_threshold"], num_perm=config.num_perm,
                              storage_config={"type": "redis", "basename": f"{self.base}:lsh".encode(),
                                              "redis": params})

    def __len__(self) -> int:
        return int(self.client.hlen(f"{self.base}:shingles"))

    @contextmanager
    def locked(self, waiting=None) -> Iterator[None]:
        """Hold the index's lock (waiting for another run's; `waiting` is told once when it must)."""
        lock = self.client.lock(f"{self.base}:lock", timeout=LOCK_SECONDS, thread_local=False)
        if not lock.acquire(blocking=False):
            self._take_over_from_the_dead()  # killed on this machine: its lock is taken over, not waited out (60 s)
            if not lock.acquire(blocking=False):
                if waiting:
                    waiting(f"index {self.name!r} is being added to by another run: waiting for it")
                lock.acquire(blocking=True)
        token = lock.local.token.decode() if isinstance(lock.local.token, bytes) else str(lock.local.token)
        self.client.set(f"{self.base}:lock-holder", f"{token} {socket.gethostname()} {os.getpid()}",
                        ex=LOCK_SECONDS * 2)
        done = threading.Event()

        def renew():
            while not done.wait(LOCK_SECONDS / 3):
                lock.reacquire()

        keeper = threading.Thread(target=renew, daemon=True)
        keeper.start()
        try:
            finished = self.repair()
            if finished and waiting:
                waiting(f"index {self.name!r}: finished adding {finished:,} record(s) that a stopped run had left "
                        "half-added")
            yield
        finally:
            done.set()
            keeper.join()
            lock.release()

    def _take_over_from_the_dead(self) -> None:
        """Delete the lock if its holder ran on this machine and is gone (a kill -9), and only if the lock is still
        that holder's (its token), in one transaction: a live run that took it meanwhile keeps it."""
        import redis

        holder = self.client.get(f"{self.base}:lock-holder")
        if holder is None:
            return
        token, host, pid = (holder.decode().split(" ") + ["", "", ""])[:3]
        if host != socket.gethostname() or not pid.isdigit():
            return  # another machine's run: only its lock's expiry tells
        try:
            os.kill(int(pid), 0)
            return  # alive
        except ProcessLookupError:
            pass
        except PermissionError:
            return
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(f"{self.base}:lock")
                if (pipe.get(f"{self.base}:lock") or b"").decode() != token:
                    return
                pipe.multi()
                pipe.delete(f"{self.base}:lock")
                pipe.execute()
            except redis.WatchError:
                return

    def ensure_whole(self, waiting=None) -> None:
        """An index only read from (--against-index) is repaired too, under its lock, if a killed run left a batch
        pending in it."""
        if self.client.scard(f"{self.base}:pending"):
            with self.locked(waiting):
                pass

    def candidates(self, sigs: np.ndarray, empty: np.ndarray) -> list[str]:
        """The indexed ids that share a band bucket with any of these signatures (in the order first met)."""
        from datasketch import LeanMinHash

        found: dict[str, None] = {}
        for i in np.flatnonzero(~empty):
            minhash = LeanMinHash(seed=self.config.seed, hashvalues=sigs[i], scheme="affine32")
            for key in self.lsh.query(minhash):
                found.setdefault(key, None)
        return list(found)

    def shingles(self, ids: list[str]) -> Shingled:
        """The indexed records' shingle hashes, in the order of `ids`."""
        raw = self.client.hmget(f"{self.base}:shingles", ids) if ids else []
        # A bucket entry without shingles (left by a kill before this order of writes) matches nothing.
        arrays = [np.frombuffer(r, dtype=np.uint64) if r is not None else np.empty(0, dtype=np.uint64) for r in raw]
        sizes = [len(a) for a in arrays]
        return Shingled(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                        np.concatenate(arrays) if arrays else np.empty(0, dtype=np.uint64))

    def references(self, sigs: np.ndarray, empty: np.ndarray, batch: str) -> tuple[list[str], Shingled, np.ndarray]:
        """(ids, shingles, signatures) of the indexed records these signatures may match, but those this `batch`
        added itself (a run again over the same inputs)."""
        ids = self.candidates(sigs, empty)
        added_by = self.client.hmget(f"{self.base}:batch", ids) if ids else []
        ids = [i for i, by in zip(ids, added_by) if by is None or by.decode() != batch]
        shingled = self.shingles(ids)
        return ids, shingled, signatures(shingled, self.config.num_perm, self.config.seed)

    def add(self, ids: list[str], shingle_sets: list[np.ndarray], sigs: np.ndarray, batch: str) -> None:
        """Index these records (their shingle hash sets and signature rows) as added by `batch`; ids already there
        are left as they are."""
        present = self.client.hmget(f"{self.base}:shingles", ids) if ids else []
        new = [i for i, known in enumerate(present) if known is None]
        if not new:
            return
        pipe = self.client.pipeline(transaction=True)  # all of the batch's shingles, or none of them
        for i in new:
            pipe.hset(f"{self.base}:shingles", ids[i], shingle_sets[i].astype(np.uint64).tobytes())
            pipe.hset(f"{self.base}:batch", ids[i], batch)
        pipe.sadd(f"{self.base}:pending", *[ids[i] for i in new])
        pipe.set(f"{self.base}:updated", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        pipe.execute()
        self._insert([ids[i] for i in new], sigs[new], [len(shingle_sets[i]) > 0 for i in new])

    def _insert(self, ids: list[str], sigs: np.ndarray, nonempty: list[bool], again: bool = False) -> None:
        """Put these records (their shingles already stored, their ids pending) in the LSH buckets, then clear
        pending. `again`: over ids a killed run half-inserted, whose partial entries are removed first."""
        from datasketch import LeanMinHash

        for key in ids if again else ():
            if key in self.lsh:
                self.lsh.remove(key)
        with self.lsh.insertion_session() as session:
            for key, row, has_text in zip(ids, sigs, nonempty):
                if has_text:  # an empty text is never a duplicate: nothing to find it by
                    session.insert(key, LeanMinHash(seed=self.config.seed, hashvalues=row, scheme="affine32"),
                                   check_duplication=False)
        self.client.srem(f"{self.base}:pending", *ids)

    def repair(self) -> int:
        """Finish a batch a killed run left pending (see the module doc); returns how many records it finished.
        Called under the lock, before a run queries or adds."""
        ids = [key.decode() for key in self.client.smembers(f"{self.base}:pending")]
        if not ids:
            return 0
        shingled = self.shingles(ids)
        sigs = signatures(shingled, self.config.num_perm, self.config.seed)
        sizes = np.diff(shingled.offsets)
        self._insert(ids, sigs, [size > 0 for size in sizes], again=True)
        return len(ids)


def drop_index(name: str, config: DedupConfig) -> int:
    """Remove index NAME (whatever its settings) from Redis; returns how many records it held. Refused when there
    is no such index; waits for a run that is adding to it."""
    index = RedisIndex(name, config, check_settings=False)
    with index.locked():
        held = len(index)
        keys = [k for k in index.client.scan_iter(match=f"{index.base}:*") if not k.endswith(b":lock")]
        if keys:
            index.client.delete(*keys)
    return held

"""A named dedup index in Redis (`dedup --index NAME`, `--against-index`, `--drop-index`) against the machine's Redis:
later batches are deduplicated against earlier ones without their files, as `--against FILE` would; two processes
adding at once give what one gives, one batch after the other; settings that differ are refused."""

import json
import os
import random
import subprocess
import sys
import uuid

import pytest
import redis

pytestmark = pytest.mark.server

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def text(rng: random.Random, words: int = 30) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


VOCABULARY = [f"w{i}" for i in range(400)]


def edited(sentence: str) -> str:  # one word changed in 30: word 3-gram Jaccard 0.82, a near-duplicate at 0.7
    words = sentence.split()
    words[15] = "changed"
    return " ".join(words)


def write(path, texts):
    path.write_text("".join(json.dumps({"instruction": f"Q{i}", "response": t}) + "\n" for i, t in enumerate(texts)))
    return path


def kept(path) -> list[str]:
    return [json.loads(line)["response"] for line in path.read_text().splitlines()]


@pytest.fixture()
def redis_url(redis_server):
    host, port = redis_server
    return f"redis://{host}:{port}/0"


@pytest.fixture()
def prefix(redis_url):
    """Each test's indexes under their own names; whatever a failed test left is removed."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"workbench-dedup:index:{name}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def batches(tmp_path):
    rng = random.Random(7)
    base = [text(rng) for _ in range(40)]
    a = write(tmp_path / "a.jsonl", base[:20] + [edited(t) for t in base[20:25]])
    b = write(tmp_path / "b.jsonl", base[20:30] + [edited(t) for t in base[:5] + base[10:13]])
    c = write(tmp_path / "c.jsonl", [edited(t) for t in base[25:28]] + base[30:32])
    return a, b, c


def test_later_batches_are_deduplicated_against_the_index_as_against_the_earlier_files(
        batches, tmp_path, invoke, redis_url, prefix):
    a, b, c = batches
    index = f"{prefix}-course"
    common = ["--redis-url", redis_url]
    first = invoke("dedup", a, "-o", tmp_path / "a.kept.jsonl", "--index", index, *common)
    assert first.exit_code == 0, first.output
    assert len(kept(tmp_path / "a.kept.jsonl")) == 25
    # The same command again (after a crash, say) finds its own records in the index, not duplicates of them.
    rerun = invoke("dedup", a, "-o", tmp_path / "a.again.jsonl", "--index", index, *common)
    assert rerun.exit_code == 0 and kept(tmp_path / "a.again.jsonl") == kept(tmp_path / "a.kept.jsonl")
    second = invoke("dedup", b, "-o", tmp_path / "b.kept.jsonl", "--index", index, *common)
    assert second.exit_code == 0, second.output
    with_file = invoke("dedup", b, "-o", tmp_path / "b.file.jsonl", "--against", a)
    assert kept(tmp_path / "b.kept.jsonl") == kept(tmp_path / "b.file.jsonl")
    assert len(kept(tmp_path / "b.kept.jsonl")) == 5 and with_file.exit_code == 0
    dropped = [json.loads(line) for line in (tmp_path / "b.kept.rejected.jsonl").read_text().splitlines()]
    assert len(dropped) == 13
    assert {d["lineage"][-1]["reason"] for d in dropped} == {f"near-duplicate of a record in index {index}"}
    manifest = json.loads((tmp_path / "b.kept.manifest.json").read_text())
    assert manifest["details"]["index"] == {"name": index, "records": 30}

    # Only read: what matches is removed, nothing is added.
    third = invoke("dedup", c, "-o", tmp_path / "c.kept.jsonl", "--against-index", index, *common)
    assert third.exit_code == 0, third.output
    assert kept(tmp_path / "c.kept.jsonl") == kept(c)[3:]
    again = invoke("dedup", c, "-o", tmp_path / "c2.kept.jsonl", "--against-index", index, *common)
    assert kept(tmp_path / "c2.kept.jsonl") == kept(c)[3:] and again.exit_code == 0

    other = invoke("dedup", c, "-o", tmp_path / "x.jsonl", "--index", index, "--ngram", "2", *common)
    assert other.exit_code == 1 and f"index '{index}' was built with other settings: ngram 3 (this run: 2)" \
        in other.output and not (tmp_path / "x.jsonl").exists()
    bad = invoke("dedup", c, "-o", tmp_path / "x.jsonl", "--index", "no such/name", *common)
    assert bad.exit_code == 1 and "index name 'no such/name'" in bad.output

    gone = invoke("dedup", "--drop-index", index, *common)
    assert gone.exit_code == 0 and f"Dropped dedup index '{index}' (30 records)" in gone.output
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"workbench-dedup:index:{index}*"))
    missing = invoke("dedup", c, "-o", tmp_path / "y.jsonl", "--against-index", index, *common)
    assert missing.exit_code == 1 and f"no dedup index '{index}'" in missing.output
    assert invoke("dedup", "--drop-index", index, *common).exit_code == 1


@pytest.mark.slow
def test_two_processes_adding_at_once_give_what_one_gives_batch_after_batch(tmp_path, redis_url, prefix):
    rng = random.Random(11)
    base = [text(rng) for _ in range(1200)]
    # Each batch holds near-copies of the other's records: whichever is indexed first keeps them.
    a = write(tmp_path / "a.jsonl", base[:600] + [edited(t) for t in base[600:800]])
    b = write(tmp_path / "b.jsonl", base[600:1200] + [edited(t) for t in base[:200]])

    def dedup(path, out, index):
        return subprocess.Popen([sys.executable, "-m", "workbench", "dedup", str(path), "-o", str(out), "--index",
                                 index, "--redis-url", redis_url], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def finished(process):
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
        return stderr

    orders = {}
    for first, second in ((a, b), (b, a)):
        index = f"{prefix}-{first.stem}{second.stem}"
        finished(dedup(first, tmp_path / f"{index}-{first.stem}.jsonl", index))
        finished(dedup(second, tmp_path / f"{index}-{second.stem}.jsonl", index))
        orders[first.stem] = (kept(tmp_path / f"{index}-a.jsonl"), kept(tmp_path / f"{index}-b.jsonl"))
    assert orders["a"] != orders["b"]  # the order matters: a test that a race would fail

    shared = f"{prefix}-shared"
    runs = [dedup(a, tmp_path / "shared-a.jsonl", shared), dedup(b, tmp_path / "shared-b.jsonl", shared)]
    said = [finished(r) for r in runs]
    together = (kept(tmp_path / "shared-a.jsonl"), kept(tmp_path / "shared-b.jsonl"))
    assert together in (orders["a"], orders["b"])
    client = redis.Redis.from_url(redis_url)
    assert client.hlen(f"workbench-dedup:index:{shared}:shingles") == len(together[0]) + len(together[1]) == 1200
    waited = [s for s in said if "is being added to by another run: waiting for it" in s]
    assert len(waited) <= 1


KILLED_MID_ADD = """
import os, signal, sys
from pipelines import dedup_index

real = dedup_index.RedisIndex._insert


def killed_half_way(self, ids, sigs, nonempty):
    half = len(ids) // 2
    real(self, ids[:half], sigs[:half], nonempty[:half])  # half of the batch's buckets are written
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 (or a power cut) would, in the middle of the add


dedup_index.RedisIndex._insert = killed_half_way
from workbench.cli import app
app(sys.argv[1:], prog_name="workbench")
"""


def test_a_kill_during_an_index_add_leaves_an_index_the_next_run_finishes_and_uses(tmp_path, redis_url, prefix,
                                                                                 batches, invoke):
    a, b, _ = batches

    def dedup(path, index, out):
        result = invoke("dedup", path, "-o", out, "--index", index, "--redis-url", redis_url)
        assert result.exit_code == 0, result.output
        return result.output

    clean = f"{prefix}-clean"
    dedup(a, clean, tmp_path / "clean-a.jsonl")
    dedup(b, clean, tmp_path / "clean-b.jsonl")

    killed = f"{prefix}-killed"
    crash = subprocess.run([sys.executable, "-c", KILLED_MID_ADD, "dedup", str(a), "-o", str(tmp_path / "k.jsonl"),
                            "--index", killed, "--redis-url", redis_url], env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert crash.returncode == -9, crash.stderr[-2000:]
    client = redis.Redis.from_url(redis_url)
    assert client.scard(f"workbench-dedup:index:{killed}:pending") > 0  # the kill left a batch half-added
    said = dedup(a, killed, tmp_path / "again-a.jsonl")  # the same command again: as if it had not been killed
    assert "finished adding" in said and "Traceback" not in said
    assert "waiting for it" not in said  # the dead run's lock was taken over at once, not waited out (60 s)
    dedup(b, killed, tmp_path / "killed-b.jsonl")
    assert kept(tmp_path / "again-a.jsonl") == kept(tmp_path / "clean-a.jsonl")
    assert kept(tmp_path / "killed-b.jsonl") == kept(tmp_path / "clean-b.jsonl")
    assert client.scard(f"workbench-dedup:index:{killed}:pending") == 0
    dropped = invoke("dedup", "--drop-index", killed, "--redis-url", redis_url)
    held = len(kept(tmp_path / "clean-a.jsonl")) + len(kept(tmp_path / "clean-b.jsonl"))
    assert dropped.exit_code == 0 and f"({held:,} records)" in dropped.output

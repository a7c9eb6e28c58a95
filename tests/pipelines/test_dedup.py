import numpy as np
import pytest

from pipelines.dedup import (
    DedupConfig,
    Shingled,
    find_duplicates,
    jaccard,
    run,
    shingle_hashes,
    shingle_texts,
    shingles,
    signatures,
)
from workbench.core.records import Record
from workbench.core.runs import Ledger

BASE = ("the business information systems msc brings together management and information technology and "
        "students learn how organisations plan build and run their information systems")


def exact(a: str, b: str, n: int = 3) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


def edit(text: str, changes: int) -> str:
    words = text.split()
    for i in range(changes):
        words[2 + i * 4] = f"changed{i}"
    return " ".join(words)


def test_shingle_definition():
    assert shingles("Café  costs, 980 EUR!", 3) == {"café costs 980", "costs 980 eur"}
    assert shingles("Two words", 3) == {"two words"}
    assert shingles("  ...  ", 3) == set()
    assert shingles("ﬁle", 1) == {"file"}  # NFKC folds the ligature


def test_hash_sets_give_the_exact_jaccard():
    a, b = BASE, edit(BASE, 2)
    assert jaccard(shingle_hashes(a, 3), shingle_hashes(b, 3)) == pytest.approx(exact(a, b))


@pytest.mark.parametrize("changes", [1, 2, 3, 4, 6])
def test_pairs_just_above_and_below_the_threshold(changes):
    other = edit(BASE, changes)
    similarity = exact(BASE, other)
    records = [Record(BASE), Record(other)]
    kept = list(run(records, DedupConfig(threshold=0.6), Ledger("dedup")))
    assert (len(kept) == 1) == (similarity >= 0.6), similarity


def test_empty_and_short_texts_are_never_duplicates_of_everything():
    records = [Record("x", context=""), Record(".", context="!"), Record("Fees?"), Record("fees")]
    kept = list(run(records, DedupConfig(), Ledger("dedup")))
    # "Fees?" and "fees" have the same single shingle; "x" differs; "." has no shingles at all.
    assert [r.instruction for r in kept] == ["x", ".", "Fees?"]


def test_unicode_variants_are_duplicates():
    records = [Record("Ｆｕｌｌ-width ＢＩＳ fees for the ﬁrst semester"),
               Record("Full-width BIS fees for the first semester")]
    assert len(list(run(records, DedupConfig(), Ledger("dedup")))) == 1


def test_clusters_file_and_lineage(tmp_path):
    a, b, c = BASE, edit(BASE, 1), edit(edit(BASE, 1), 2)
    records = [Record(a), Record("something else entirely about nursing placements"), Record(b), Record(c)]
    ledger, removed, dropped = Ledger("dedup", "r"), [], []
    kept = list(run(records, DedupConfig(), ledger, removed_out=removed, dropped=dropped))
    assert [r.id for r in kept] == [records[0].id, records[1].id]
    assert kept[0].meta["dedup_cluster_size"] == 3 and kept[1].meta["dedup_cluster_size"] == 1
    by_id = {line["id"]: line for line in removed}
    assert set(by_id) == {records[2].id, records[3].id}
    for line in removed:
        assert line["duplicate_of"] == records[0].id and line["similarity"] >= 0.7
        partner = next(r for r in records if r.id == line["linked_to"])
        removed_record = next(r for r in records if r.id == line["id"])
        assert line["similarity"] == pytest.approx(exact(removed_record.instruction, partner.instruction), abs=1e-6)
    assert all(r.lineage[-1]["reason"] == "near-duplicate" for r in dropped)
    assert ledger.counts["drop: near-duplicate"] == 2


@pytest.mark.parametrize("keep, expected", [("first", 0), ("longest", 1), ("seed", 1)])
def test_keep_strategies(keep, expected):
    longer = BASE + " and more words"
    records = [Record(BASE, source="generated"), Record(longer, source="seed")]
    kept = list(run(records, DedupConfig(keep=keep), Ledger("dedup")))
    assert [r.id for r in kept] == [records[expected].id]


def test_against_references_removes_matches_without_deduplicating_references():
    references = [Record(BASE, source="seed"), Record(edit(BASE, 1), source="seed")]
    records = [Record(edit(BASE, 2)), Record("a completely different question about the nursing allowance")]
    removed: list[dict] = []
    kept = list(run(records, DedupConfig(), Ledger("dedup"), references, removed_out=removed))
    assert [r.id for r in kept] == [records[1].id]
    assert removed[0]["duplicate_of"] in {r.id for r in references}


def test_deterministic():
    records = [Record(BASE), Record(edit(BASE, 1)), Record(edit(BASE, 3)), Record("other text entirely here")]
    first = [r.to_json() for r in run(records, DedupConfig(), Ledger("dedup"))]
    assert first == [r.to_json() for r in run(records, DedupConfig(), Ledger("dedup"))]


def exact_pairs(hashes: list[np.ndarray], threshold: float) -> set[tuple[int, int]]:
    """All pairs at or above the threshold, by a sparse X·Xᵀ over shingle ids (intersection sizes)."""
    from scipy.sparse import csr_matrix, triu

    ids = {h: k for k, h in enumerate(np.unique(np.concatenate(hashes)).tolist())}
    rows = np.repeat(np.arange(len(hashes)), [len(h) for h in hashes])
    cols = [ids[h] for h in np.concatenate(hashes).tolist()]
    x = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(hashes), len(ids)))
    inter = triu(x @ x.T, k=1).tocoo()
    sizes = np.array([len(h) for h in hashes])
    similarity = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    keep = similarity >= threshold
    return set(zip(inter.row[keep].tolist(), inter.col[keep].tolist()))


def test_recall_and_precision_against_exact_all_pairs():
    import random

    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(2000)]
    texts: list[str] = []
    for _ in range(1500):
        if texts and rng.random() < 0.15:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 6)):
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(40, 80))))
    shingled = shingle_texts(texts, 3)
    hashes = [shingled.set(i) for i in range(len(texts))]
    plan = find_duplicates(shingled, DedupConfig())
    truth = exact_pairs(hashes, 0.7)
    found = set(plan.similarities)
    assert found <= truth  # exact verification: no false pairs
    assert len(found) >= 0.99 * len(truth) and len(truth) > 50


def test_signatures_estimate_jaccard():
    a = shingle_hashes(BASE, 3)
    b = shingle_hashes(edit(BASE, 2), 3)
    sa, sb = signatures(Shingled.join([shingle_texts([BASE], 3), shingle_texts([edit(BASE, 2)], 3)]), 256, 1)
    assert abs((sa == sb).mean() - jaccard(a, b)) < 0.1


def test_redis_storage_finds_the_same_pairs_and_cleans_up():
    import random

    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    rng = random.Random(4)
    texts = [BASE, edit(BASE, 1), edit(BASE, 3)] + [
        " ".join(f"w{rng.randrange(500)}" for _ in range(30)) for _ in range(40)]
    shingled = shingle_texts(texts, 3)
    memory = find_duplicates(shingled, DedupConfig())
    shared = find_duplicates(shingled, DedupConfig(storage="redis", redis_prefix="workbench-test-dedup"))
    assert shared.similarities == memory.similarities and shared.candidates == memory.candidates
    assert not list(client.scan_iter(match="workbench-test-dedup*"))


def test_unreachable_redis_is_a_clear_error():
    from workbench.core.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="Redis at redis://127.0.0.1:1/0"):
        find_duplicates(shingle_texts([BASE], 3), DedupConfig(storage="redis", redis_url="redis://127.0.0.1:1/0"))


def test_batched_shingling_equals_one_text_at_a_time():
    texts = [BASE, "", "two words", "x", edit(BASE, 2), "Ｆｕｌｌ width"]
    together = shingle_texts(texts, 3)
    for i, text in enumerate(texts):
        assert np.array_equal(together.set(i), shingle_hashes(text, 3))
        assert len(together.set(i)) == len(shingles(text, 3))


def test_workers_give_the_same_result():
    from pipelines.dedup import shingle_texts_parallel

    texts = [edit(BASE, i % 5) + f" number {i}" for i in range(120)]
    one = shingle_texts(texts, 3)
    many, sigs = shingle_texts_parallel(texts, 3, workers=2, chunk=25, num_perm=128)
    assert np.array_equal(one.offsets, many.offsets) and np.array_equal(one.hashes, many.hashes)
    assert np.array_equal(sigs, signatures(one, 128, 1))
    records = [Record(t) for t in texts]
    assert [r.id for r in run(records, DedupConfig(workers=2), Ledger("d"))] == \
        [r.id for r in run(records, DedupConfig(), Ledger("d"))]


def test_signatures_in_chunks_equal_all_at_once():
    shingled = shingle_texts([edit(BASE, i % 7) for i in range(50)] + [""], 3)
    assert np.array_equal(signatures(shingled, 128, 1, chunk=7), signatures(shingled, 128, 1, chunk=1000))


def test_file_path_gives_the_same_output_as_run(tmp_path):
    import json

    from pipelines.dedup_file import dedup_file
    from workbench.core.io import load_records, write_records

    texts = [edit(BASE, i % 4) + (" tail" * (i % 3)) for i in range(30)] + [f"unrelated text number {i} here"
                                                                            for i in range(30)]
    records = [Record(t, source="seed" if i % 5 == 0 else "generated") for i, t in enumerate(texts)]
    source = tmp_path / "in.jsonl"
    write_records(source, records)  # i and i + 12 repeat a text: exact duplicate rows, quarantined on reading
    with open(source, "a") as f:
        f.write("{broken\n")
    config = DedupConfig(keep="seed", workers=2)
    result = dedup_file(source, tmp_path / "out.jsonl", config, tmp_path / "rej.jsonl", tmp_path / "cl.jsonl")
    problems: list = []
    readable = load_records(source, problems)
    removed: list[dict] = []
    expected = list(run(readable, config, Ledger("dedup"), removed_out=removed))
    assert (tmp_path / "out.jsonl").read_text() == "".join(r.to_json() + "\n" for r in expected)
    order = [r.id for r in readable]
    assert [json.loads(x) for x in (tmp_path / "cl.jsonl").read_text().splitlines()] == \
        sorted(removed, key=lambda line: order.index(line["id"]))
    assert result.kept == len(expected) and result.removed == len(removed)
    assert len(load_records(tmp_path / "rej.jsonl", [])) == len(removed) > 0
    assert sorted((p.line, p.reason) for p in result.problems) == sorted((p.line, p.reason) for p in problems)

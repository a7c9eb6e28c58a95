"""The near-duplicate engine: shingles, exact Jaccard on hashes, MinHash signatures, LSH candidates, verification."""

import numpy as np
import pytest

from workbench.core.minhash import (
    DedupConfig,
    Shingled,
    find_duplicates,
    jaccard,
    shingle_hashes,
    shingle_texts,
    shingles,
    signatures,
)


def test_shingle_definition():
    assert shingles("Café  costs, 980 EUR!", 3) == {"café costs 980", "costs 980 eur"}
    assert shingles("Two words", 3) == {"two words"}
    assert shingles("  ...  ", 3) == set()
    assert shingles("ﬁle", 1) == {"file"}  # NFKC folds the ligature


def test_hash_sets_give_the_exact_jaccard(near):
    a, b = near.BASE, near.edit(near.BASE, 2)
    assert jaccard(shingle_hashes(a, 3), shingle_hashes(b, 3)) == pytest.approx(near.exact(a, b))


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


def corpus(seed: int, words: int, size: int, share: float, edits: int, length: tuple[int, int]) -> list[str]:
    """Random texts over a vocabulary of WORDS words, a SHARE of them an earlier text with 1..EDITS words changed."""
    import random

    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(words)]
    texts: list[str] = []
    for _ in range(size):
        if texts and rng.random() < share:
            changed = rng.choice(texts).split()
            for _ in range(rng.randint(1, edits)):
                changed[rng.randrange(len(changed))] = rng.choice(vocabulary)
            texts.append(" ".join(changed))
        else:
            texts.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(*length))))
    return texts


def test_recall_and_precision_against_exact_all_pairs():
    shingled = shingle_texts(corpus(3, 2000, 1500, 0.15, 6, (40, 80)), 3)
    plan = find_duplicates(shingled, DedupConfig())
    truth = exact_pairs([shingled.set(i) for i in range(len(shingled))], 0.7)
    assert set(plan.similarities) == truth and len(truth) > 50  # no false pair; the index misses none


def first_of_components(n: int, pairs) -> list[bool]:
    """For `keep first`: whether each text is the first of its connected component."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in pairs:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)
    return [find(i) == i for i in range(n)]


@pytest.mark.parametrize("giant", [64, 2])
def test_giant_buckets_give_the_clusters_of_all_pairs_without_all_pairs(giant, monkeypatch):
    import random

    from workbench.core import minhash

    monkeypatch.setattr(minhash, "GIANT_BUCKET", giant)  # 2: every bucket of three or more is joined lazily

    rng = random.Random(5)
    words = ["fee", "course", "term"]  # three words: every text shares buckets with almost every other
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 80))) for _ in range(600)]
    texts += [" ".join(f"w{rng.randrange(3000)}" for _ in range(30)) for _ in range(200)]
    shingled = shingle_texts(texts, 3)
    truth = exact_pairs([shingled.set(i) for i in range(len(texts))], 0.7)
    plan = find_duplicates(shingled, DedupConfig())
    assert plan.kept == first_of_components(len(texts), truth)[:len(texts)]
    assert len(truth) > 50_000 and len(plan.similarities) < len(truth) / (4 if giant == 64 else 50)
    assert set(plan.similarities) <= truth


def test_a_small_vocabulary_finds_the_same_pairs_as_exact_all_pairs():
    texts = corpus(6, 34, 2000, 0.1, 4, (50, 100))
    shingled = shingle_texts(texts, 3)
    truth = exact_pairs([shingled.set(i) for i in range(len(texts))], 0.7)
    plan = find_duplicates(shingled, DedupConfig())
    assert set(plan.similarities) == truth and len(truth) > 150
    # Unrelated texts of one small vocabulary share shingles, not buckets: few candidates beyond the true pairs.
    assert plan.candidates < 3 * len(truth)


def test_signatures_estimate_jaccard(near):
    a = shingle_hashes(near.BASE, 3)
    b = shingle_hashes(near.edit(near.BASE, 2), 3)
    pair = [shingle_texts([near.BASE], 3), shingle_texts([near.edit(near.BASE, 2)], 3)]
    sa, sb = signatures(Shingled.join(pair), 256, 1)
    assert abs((sa == sb).mean() - jaccard(a, b)) < 0.1


@pytest.mark.server  # starts redis-server (the redis_server fixture)
def test_redis_storage_finds_the_same_pairs_and_cleans_up(near, redis_server):
    import random

    import redis

    host, port = redis_server
    client = redis.Redis(host=host, port=port, db=0)
    rng = random.Random(4)
    texts = [near.BASE, near.edit(near.BASE, 1), near.edit(near.BASE, 3)] + [
        " ".join(f"w{rng.randrange(500)}" for _ in range(30)) for _ in range(40)]
    shingled = shingle_texts(texts, 3)
    memory = find_duplicates(shingled, DedupConfig())
    shared = find_duplicates(shingled, DedupConfig(storage="redis", redis_prefix="workbench-test-dedup",
                                                    redis_url=f"redis://{host}:{port}/0"))
    assert shared.similarities == memory.similarities and shared.candidates == memory.candidates
    assert not list(client.scan_iter(match="workbench-test-dedup*"))


def test_unreachable_redis_is_a_clear_error(near):
    from workbench.core.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="Redis at redis://127.0.0.1:1/0"):
        find_duplicates(shingle_texts([near.BASE], 3), DedupConfig(storage="redis", redis_url="redis://127.0.0.1:1/0"))


def test_batched_shingling_equals_one_text_at_a_time(near):
    texts = [near.BASE, "", "two words", "x", near.edit(near.BASE, 2), "Ｆｕｌｌ width"]
    together = shingle_texts(texts, 3)
    for i, text in enumerate(texts):
        assert np.array_equal(together.set(i), shingle_hashes(text, 3))
        assert len(together.set(i)) == len(shingles(text, 3))


def test_signatures_in_chunks_equal_all_at_once(near):
    shingled = shingle_texts([near.edit(near.BASE, i % 7) for i in range(50)] + [""], 3)
    assert np.array_equal(signatures(shingled, 128, 1, chunk=7), signatures(shingled, 128, 1, chunk=1000))

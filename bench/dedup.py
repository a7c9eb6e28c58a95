"""Near-duplicate removal end to end: ours vs the straightforward datasketch pipeline, same corpus, same run.

Corpus (seeded): documents of 50-100 words over a 20,000-word vocabulary, 10% planted near-duplicates made
by editing a few words of an earlier document, written as record JSONL. Both methods run end to end in a
fresh process each (read the JSONL, find duplicates at Jaccard 0.7 of word 3-grams, write kept records and
the removed ids) and report seconds and peak memory (max RSS):
- datasketch: `MinHash.bulk` (128 permutations) + `MinHashLSH(threshold=0.7)` insert and query; its LSH
  candidates are its duplicates;
- ours: the dedup stage, `pipelines.dedup.run` (index at 0.5, exact verification), with --workers processes; its
  verified pairs for recall and precision come from the same engine (`pipelines.minhash.find_duplicates`) in a
  process of their own, so that they cost the timed run nothing.
Recall and precision of the duplicate pairs are measured against exact all-pairs Jaccard (a sparse X·Xᵀ over
shingle ids) where that is affordable.

    .venv/bin/python bench/dedup.py --sizes 20000,200000,1000000 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_corpus(path: Path, size: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(20_000)]
    docs: list[str] = []
    with open(path, "w") as f:
        for i in range(size):
            if docs and rng.random() < 0.10:
                words = rng.choice(docs).split()
                for _ in range(rng.randint(1, 4)):
                    words[rng.randrange(len(words))] = rng.choice(vocabulary)
                text = " ".join(words)
            else:
                text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(50, 100)))
            docs.append(text)
            f.write(json.dumps({"id": f"d{i}", "instruction": text}) + "\n")


def run_ours(source: Path, out: Path, workers: int) -> list[tuple[int, int]]:
    """What `workbench dedup SOURCE -o kept.jsonl --clusters removed.jsonl --workers N` runs."""
    from pipelines import dedup
    from workbench.core.runs import Outputs

    config = dedup.DedupConfig(fields=("instruction",), workers=workers)
    dedup.run([source], config, Outputs.beside(out / "kept.jsonl", "dedup", files={
        "clusters.jsonl": out / "removed.jsonl"}))
    return []


def ours_pairs(source: Path, workers: int) -> list[tuple[int, int]]:
    """The verified pairs the stage's engine finds (the same texts, config and index)."""
    from pipelines.minhash import DedupConfig, find_duplicates, shingle_texts
    from workbench.core.io import load_records

    shingled = shingle_texts([r.instruction for r in load_records(source, [])], 3)
    return list(find_duplicates(shingled, DedupConfig(fields=("instruction",), workers=workers)).similarities)


def run_datasketch(source: Path, out: Path) -> list[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    from pipelines.minhash import shingles
    from workbench.core.io import load_records, write_records

    records = load_records(source, [])
    sets = [[s.encode() for s in shingles(r.instruction, 3)] for r in records]
    minhashes = MinHash.bulk(sets, num_perm=128)
    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    with lsh.insertion_session() as session:
        for i, m in enumerate(minhashes):
            session.insert(i, m, check_duplication=False)
    pairs = sorted({(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i})
    parent = list(range(len(records)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    kept = [r for i, r in enumerate(records) if find(i) == i]
    write_records(out / "kept.jsonl", kept)
    (out / "removed.jsonl").write_text("".join(json.dumps({"id": r.id}) + "\n"
                                               for i, r in enumerate(records) if find(i) != i))
    return pairs


def exact_pairs(source: Path, threshold: float = 0.7) -> set[tuple[int, int]]:
    import numpy as np
    from scipy.sparse import csr_matrix, triu

    from pipelines.minhash import shingle_texts
    from workbench.core.io import load_records

    shingled = shingle_texts([r.instruction for r in load_records(source, [])], 3)
    sets = [shingled.set(i) for i in range(len(shingled))]
    flat = np.concatenate(sets)
    _, columns = np.unique(flat, return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    x = csr_matrix((np.ones(len(flat), dtype=np.float32), (rows, columns)))
    inter = triu(x @ x.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets])
    similarity = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    keep = similarity >= threshold
    return set(zip(inter.row[keep].tolist(), inter.col[keep].tolist()))


def child(method: str, source: Path, out: Path, workers: int) -> None:
    if method == "ours-pairs":
        (out / "pairs.json").write_text(json.dumps(ours_pairs(source, workers)))
        return
    clock = time.perf_counter()
    pairs = run_ours(source, out, workers) if method == "ours" else run_datasketch(source, out)
    seconds = time.perf_counter() - clock
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    (out / "pairs.json").write_text(json.dumps(pairs))
    print(json.dumps({"seconds": seconds, "peak_mib": max(peak, children)}))


def measure(method: str, source: Path, workers: int, size: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"dedup-{method}-"))
    result = subprocess.run([sys.executable, __file__, "--child", method, "--input", str(source), "--out", str(out),
                             "--workers", str(workers)], capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["docs_per_s"] = round(size / figures["seconds"])
    if method == "ours":  # its pairs, untimed
        subprocess.run([sys.executable, __file__, "--child", "ours-pairs", "--input", str(source), "--out", str(out),
                        "--workers", str(workers)], check=True)
    figures["pairs"] = {tuple(p) for p in json.loads((out / "pairs.json").read_text())}
    figures["removed"] = len((out / "removed.jsonl").read_text().splitlines())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--exact-up-to", type=int, default=200_000, help="skip exact all-pairs above this size")
    parser.add_argument("--child", choices=["ours", "ours-pairs", "datasketch"], help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.input, args.out, args.workers)

    report = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        source = Path(tempfile.gettempdir()) / f"dedup-bench-{size}.jsonl"
        if not source.exists():
            make_corpus(source, size)
        row = {"docs": size}
        for method in ("datasketch", "ours"):
            row[method] = measure(method, source, args.workers, size)
        if size <= args.exact_up_to:
            truth = exact_pairs(source)
            row["exact_pairs"] = len(truth)
            for method in ("datasketch", "ours"):
                found = row[method]["pairs"]
                row[method]["recall"] = round(len(found & truth) / max(len(truth), 1), 4)
                row[method]["precision"] = round(len(found & truth) / max(len(found), 1), 4)
        for method in ("datasketch", "ours"):
            row[method]["pairs"] = len(row[method]["pairs"])
            row[method]["seconds"] = round(row[method]["seconds"], 1)
            row[method]["peak_mib"] = round(row[method]["peak_mib"])
        row["speedup"] = round(row["ours"]["docs_per_s"] / row["datasketch"]["docs_per_s"], 2)
        report[size] = row
        print(json.dumps(row), flush=True)
        print(f"{size:,} docs: ours {row['ours']['docs_per_s']:,} docs/s ({row['ours']['seconds']} s, "
              f"{row['ours']['peak_mib']} MiB) vs datasketch {row['datasketch']['docs_per_s']:,} docs/s "
              f"({row['datasketch']['seconds']} s, {row['datasketch']['peak_mib']} MiB): {row['speedup']}x",
              flush=True)


if __name__ == "__main__":
    main()

"""Near-duplicate removal end to end: ours vs the straightforward datasketch pipeline, same corpus, same run.

Corpus (seeded): documents of 50-100 words over a 20,000-word vocabulary, 10% planted near-duplicates made
by editing a few words of an earlier document, written as record JSONL; the same over a 34-word vocabulary
(`--vocabularies 20000,34,3`: templated text, where unrelated documents share many shingles and MinHash buckets
fill up) and a 3-word one (every document a near-copy of every other: one giant cluster), timed beside the
normal one in the same run (ours on the small vocabulary / ours on the normal one). Both methods run end to end in a
fresh process each (read the JSONL, find duplicates at Jaccard 0.7 of word 3-grams, write kept records and
the removed ids) and report seconds and peak memory (max RSS):
- datasketch: `MinHash.bulk` (128 permutations) + `MinHashLSH(threshold=0.7)` insert and query; its LSH
  candidates are its duplicates;
- ours: the dedup stage, `pipelines.dedup.run` (index at 0.3, exact verification), with --workers processes; its
  verified pairs for recall and precision come from the same engine (`workbench.core.minhash.find_duplicates`) in a
  process of their own, so that they cost the timed run nothing.
Recall and precision of the duplicate pairs are measured against exact all-pairs Jaccard (a sparse X·Xᵀ over
shingle ids) where that is affordable.

    .venv/bin/python bench/dedup.py --sizes 20000,200000,1000000 [--workers 2] [--vocabularies 20000,34,3]
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


def make_corpus(path: Path, size: int, seed: int = 0, words: int = 20_000) -> None:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(words)]
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
    from workbench.core.io import load_records
    from workbench.core.minhash import DedupConfig, find_duplicates, shingle_texts

    shingled = shingle_texts([r.instruction for r in load_records(source, [])], 3)
    return list(find_duplicates(shingled, DedupConfig(fields=("instruction",), workers=workers)).similarities)


def run_datasketch(source: Path, out: Path) -> list[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    from workbench.core.io import load_records, write_records
    from workbench.core.minhash import shingles

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


def exact_pairs(source: Path, threshold: float = 0.7, block: int = 1000) -> set[tuple[int, int]]:
    """Every pair at or above the threshold: intersection sizes from a sparse X·Xᵀ over shingle ids, a block of
    rows at a time (on a small vocabulary most documents share a shingle, and the whole product is too big)."""
    import numpy as np
    from scipy.sparse import csr_matrix

    from workbench.core.io import load_records
    from workbench.core.minhash import shingle_texts

    shingled = shingle_texts([r.instruction for r in load_records(source, [])], 3)
    sets = [shingled.set(i) for i in range(len(shingled))]
    flat = np.concatenate(sets)
    _, columns = np.unique(flat, return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    x = csr_matrix((np.ones(len(flat), dtype=np.float32), (rows, columns)))
    xt = x.T.tocsr()  # once: a CSC right-hand side would be converted again for every block
    sizes = np.array([len(s) for s in sets])
    found: set[tuple[int, int]] = set()
    for start in range(0, len(sets), block):
        inter = (x[start:start + block] @ xt).tocoo()
        row = inter.row + start
        upper = inter.col > row
        row, col, data = row[upper], inter.col[upper], inter.data[upper]
        similarity = data / (sizes[row] + sizes[col] - data)
        keep = similarity >= threshold
        found.update(zip(row[keep].tolist(), col[keep].tolist()))
    return found


def _vm_hwm_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def child(method: str, source: Path, out: Path, workers: int) -> None:
    if method == "ours-pairs":
        (out / "pairs.json").write_text(json.dumps(ours_pairs(source, workers)))
        return
    clock = time.perf_counter()
    pairs = run_ours(source, out, workers) if method == "ours" else run_datasketch(source, out)
    seconds = time.perf_counter() - clock
    # This process's own high-water mark (VmHWM): ru_maxrss of RUSAGE_SELF survives exec, so it would report the
    # bench's parent process (3 GB after an exact all-pairs run) instead of this one. Workers: RUSAGE_CHILDREN.
    peak = _vm_hwm_mib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # MiB (Linux reports KiB)
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
    parser.add_argument("--vocabularies", default="20000", help="corpus vocabulary sizes, e.g. 20000,34")
    parser.add_argument("--exact-up-to", type=int, default=300_000, help="skip exact all-pairs above this size")
    parser.add_argument("--child", choices=["ours", "ours-pairs", "datasketch"], help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.input, args.out, args.workers)

    vocabularies = [int(v) for v in args.vocabularies.split(",")]
    for size in [int(s) for s in args.sizes.split(",")]:
        ours_seconds = {}
        for words in vocabularies:
            row = bench_row(size, words, args)
            ours_seconds[words] = row["ours"]["seconds"]
            print(json.dumps(row), flush=True)
            anchor = (f" vs datasketch {row['datasketch']['docs_per_s']:,} docs/s ({row['datasketch']['seconds']} s, "
                      f"{row['datasketch']['peak_mib']} MiB): {row['speedup']}x") if "datasketch" in row else ""
            quality = f"; recall {row['ours']['recall']}, precision {row['ours']['precision']}" \
                if "recall" in row["ours"] else ""
            print(f"{size:,} docs, {words:,}-word vocabulary: ours {row['ours']['docs_per_s']:,} docs/s "
                  f"({row['ours']['seconds']} s, {row['ours']['peak_mib']} MiB){anchor}{quality}", flush=True)
        normal = vocabularies[0]
        for words in vocabularies[1:]:
            print(f"{size:,} docs: ours on the {words:,}-word vocabulary took "
                  f"{ours_seconds[words] / ours_seconds[normal]:.2f}x the time of the {normal:,}-word one", flush=True)


def bench_row(size: int, words: int, args) -> dict:
    source = Path(tempfile.gettempdir()) / f"dedup-bench-{size}{'' if words == 20_000 else f'-v{words}'}.jsonl"
    if not source.exists():
        make_corpus(source, size, words=words)
    row: dict = {"docs": size, "vocabulary": words}
    # Below 10 words every document is near every other: datasketch's queries would each return the whole corpus
    # (n² ids), and so would exact all-pairs; ours is measured alone (its clusters: tests/pipelines/test_minhash.py).
    methods = ("datasketch", "ours") if words >= 10 else ("ours",)
    for method in methods:
        row[method] = measure(method, source, args.workers, size)
    if words >= 10 and size <= args.exact_up_to:
        truth = exact_pairs(source)
        row["exact_pairs"] = len(truth)
        for method in methods:
            found = row[method]["pairs"]
            row[method]["recall"] = round(len(found & truth) / max(len(truth), 1), 4)
            row[method]["precision"] = round(len(found & truth) / max(len(found), 1), 4)
    for method in methods:
        row[method]["pairs"] = len(row[method]["pairs"])
        row[method]["seconds"] = round(row[method]["seconds"], 1)
        row[method]["peak_mib"] = round(row[method]["peak_mib"])
    if "datasketch" in row:
        row["speedup"] = round(row["ours"]["docs_per_s"] / row["datasketch"]["docs_per_s"], 2)
    return row


if __name__ == "__main__":
    main()

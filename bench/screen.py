"""Toxicity scoring: our length-sorted token-budget batches vs calling `Detoxify.predict` the plain way.

A bert-base-sized detoxify-format checkpoint (random weights: same architecture and label count as detoxify
`original`) is built locally; 500 seeded texts with lognormal word counts (median 40, 5..400). The anchor,
measured in the same run: `Detoxify.predict` on fixed batches of 32 in input order. Both in fp32 on the CPU;
the largest absolute score difference must stay below 1e-5.

    .venv/bin/python bench/screen.py [--texts 500] [--layers 12] [--hidden 768]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def texts(count: int, seed: int = 0) -> list[str]:
    from workbench.core.catalog import load_catalog

    rng = random.Random(seed)
    words = " ".join(p.text for p in load_catalog()).split()
    made = []
    for _ in range(count):
        n = int(min(400, max(5, rng.lognormvariate(np.log(40), 0.8))))
        start = rng.randrange(len(words) - n)
        made.append(" ".join(words[start:start + n]))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    args = parser.parse_args()

    import torch
    from detoxify import Detoxify

    from pipelines.screen import ScreenConfig, load_scorer
    from workbench.core.tiny import build_tiny_detoxify

    torch.set_num_threads(torch.get_num_threads())
    corpus = texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, folder = build_tiny_detoxify(tmp, hidden=args.hidden, layers=args.layers,
                                                 heads=max(1, args.hidden // 64), intermediate=4 * args.hidden)
        plain = Detoxify("original", checkpoint=str(checkpoint), huggingface_config_path=str(folder))
        ours = load_scorer(ScreenConfig(checkpoint=str(checkpoint), hf_config=str(folder), device="cpu",
                                        batch_tokens=args.batch_tokens))
        ours.score(corpus[:8])  # warm-up, both
        plain.predict(corpus[:8])
        clock = time.perf_counter()
        reference = [plain.predict(corpus[i:i + 32]) for i in range(0, len(corpus), 32)]
        plain_s = time.perf_counter() - clock
        clock = time.perf_counter()
        scores = ours.score(corpus)
        ours_s = time.perf_counter() - clock
    expected = np.array([[np.atleast_1d(batch[label])[k] for label in ours.labels]
                         for batch in reference for k in range(len(np.atleast_1d(batch[ours.labels[0]])))])
    figures = {"texts": len(corpus), "layers": args.layers, "hidden": args.hidden,
               "plain_s": round(plain_s, 2), "ours_s": round(ours_s, 2),
               "plain_texts_per_s": round(len(corpus) / plain_s, 1), "ours_texts_per_s": round(len(corpus) / ours_s, 1),
               "speedup": round(plain_s / ours_s, 2), "max_abs_diff": float(np.abs(expected - scores).max())}
    print(json.dumps(figures, indent=2))
    print(f"{figures['speedup']}x the plain Detoxify.predict loop ({plain_s:.1f} s vs {ours_s:.1f} s, same run); "
          f"max |score difference| {figures['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()

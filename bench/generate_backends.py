"""Plain batched `generate` vs transformers' continuous batching (`generate_batch`), same prompts, same run.

The issue asks to use whichever is faster. Both run greedy on tiny models of the real architectures
(Falcon like falcon-7b, and Llama) on the CPU, prompts of mixed length; useful tokens/s counts the
generated tokens that came back. Continuous batching must also *return tokens*: on transformers 5.24 it
fails quietly for Falcon (FACTS.md), which this bench checks and reports.

    .venv/bin/python bench/generate_backends.py [--prompts 32] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def prompts(count: int, seed: int = 0) -> list[str]:
    from workbench.core.catalog import load_catalog

    rng = random.Random(seed)
    words = " ".join(p.text for p in load_catalog()).split()
    return [" ".join(words[(s := rng.randrange(len(words) - 200)): s + rng.randint(8, 120)]) for _ in range(count)]


def measure(model_dir: Path, texts: list[str], new_tokens: int, batch_size: int) -> dict:
    import torch
    from transformers import GenerationConfig

    from workbench.core.models import GenerationParams, get_model

    model = get_model(str(model_dir))
    params = GenerationParams(max_new_tokens=new_tokens, batch_size=batch_size)
    model.complete(texts[:batch_size], params)  # warm-up
    clock = time.perf_counter()
    plain = model.complete(texts, params)
    plain_s = time.perf_counter() - clock
    plain_tokens = sum(c.completion_tokens for c in plain)

    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=model.tokenizer.eos_token_id,
                              pad_token_id=model.tokenizer.pad_token_id)
    logging.disable(logging.ERROR)  # its quiet failure is logged as an error; we count tokens instead
    clock = time.perf_counter()
    try:
        with torch.inference_mode():
            outputs = model.model.generate_batch(ids, generation_config=config, warmup=False)
        error = None
    except Exception as e:  # report any failure of the candidate path as data, not a crash
        outputs, error = {}, f"{type(e).__name__}: {e}"
    cb_s = time.perf_counter() - clock
    logging.disable(logging.NOTSET)
    cb_tokens = sum(len(o.generated_tokens or []) for o in outputs.values())
    return {"plain_tokens": plain_tokens, "plain_s": round(plain_s, 3),
            "plain_tok_per_s": round(plain_tokens / plain_s, 1),
            "cb_tokens": cb_tokens, "cb_s": round(cb_s, 3),
            "cb_tok_per_s": round(cb_tokens / cb_s, 1) if cb_tokens else 0.0,
            "cb_returned_tokens": cb_tokens > 0, "cb_error": error,
            "cb_vs_plain": round((cb_tokens / cb_s) / (plain_tokens / plain_s), 2) if cb_tokens else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from workbench.core.tiny import TinySpec, build_tiny_model

    texts = prompts(args.prompts)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("falcon", "llama"):
            model_dir = build_tiny_model(Path(tmp) / arch, TinySpec(arch=arch, layers=4, hidden=256))
            results[arch] = measure(model_dir, texts, args.new_tokens, args.batch_size)
    print(json.dumps(results, indent=2))
    for arch, r in results.items():
        verdict = "no tokens came back" if not r["cb_returned_tokens"] else f"{r['cb_vs_plain']}x plain generate"
        print(f"{arch}: plain generate {r['plain_tok_per_s']} tok/s; continuous batching: {verdict}")


if __name__ == "__main__":
    main()

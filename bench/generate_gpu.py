"""Generation speed: the workbench's transformers backend (`Model.complete`: length-sorted batches) against plain
HF `generate` over the same prompts in their given order at batch 64 (the anchor: 2,111 tok/s on an H200 at
falcon-7b shapes), in one run; and, as a candidate, the backend with falcon's key/value head expanded. Greedy;
random weights rarely stop early, so all write about `--new-tokens` per prompt and tokens/s counts what came back.

    python bench/generate_gpu.py                       # the GPU machine: falcon-7b shapes, bf16
    .venv/bin/python bench/generate_gpu.py --tiny      # the CPU: a tiny Falcon, to check the script
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", default="64,128", help="the backend's batch sizes to try")
    args = parser.parse_args()

    from generate_backends import prompts
    from transformers import AutoModelForCausalLM, FalconConfig

    from workbench.core.models import GenerationParams, Model, linear_subclasses_as_linear, load_tokenizer
    from workbench.core.tiny import TinySpec, build_tiny_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp) / "tiny", TinySpec(arch="falcon", layers=4, hidden=256))
        tokenizer = load_tokenizer(str(tiny))
        if args.tiny:
            model = AutoModelForCausalLM.from_pretrained(tiny).to(device)
        else:
            torch.manual_seed(0)
            with torch.device(device), linear_subclasses_as_linear("falcon"):
                model = AutoModelForCausalLM.from_config(FalconConfig(), dtype=torch.bfloat16)
    model.eval()
    tokenizer.padding_side = "left"
    texts = prompts(args.prompts)
    kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False,
              "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}

    def timed(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return tokens / (time.perf_counter() - start)

    def plain() -> int:  # the anchor: batches of 64 in the prompts' own order
        made = 0
        for start in range(0, len(texts), 64):
            enc = tokenizer(texts[start:start + 64], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**enc, **kwargs)
            made += (out[:, enc["input_ids"].shape[1]:] != tokenizer.pad_token_id).sum().item()
        return made

    backend = Model("bench", model, tokenizer, device, "none", 0)

    def ours(batch: int) -> int:
        params = GenerationParams(max_new_tokens=args.new_tokens, batch_size=batch)
        return sum(c.completion_tokens for c in backend.complete(texts, params))

    plain()  # warm-up (kernels, allocator)
    anchor = timed(plain)
    print(f"{device}; {len(texts)} prompts, {args.new_tokens} new tokens each; "
          f"{'tiny Falcon' if args.tiny else 'falcon-7b shapes, random weights, bf16'}")
    print(f"HF generate, batch 64, given order: {anchor:,.0f} tok/s")
    best = 0.0
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rate = timed(lambda size=batch: ours(size))
        best = max(best, rate)
        print(f"workbench backend, batch {batch}, length-sorted: {rate:,.0f} tok/s ({rate / anchor:.2f}x)")
    # A candidate, not yet the product's: falcon's prefill through sdpa's fused kernels (one key/value head
    # expanded over the 71 query heads) instead of the math path that materialises batch x 71 x L x L scores.
    from pipelines.finetune.step import ExpandedKeyValueHeads

    with ExpandedKeyValueHeads():
        expanded = timed(lambda: ours(64))
    print(f"workbench backend, batch 64, length-sorted, key/value heads expanded: {expanded:,.0f} tok/s "
          f"({expanded / anchor:.2f}x; a candidate, not the product's path)")
    print(f"generation ratio {best / anchor:.2f}")


if __name__ == "__main__":
    main()

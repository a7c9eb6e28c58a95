"""The default `workbench finetune` on falcon-7b's shapes (random weights, 8-bit) on a simulated 24 GB card:
`torch.cuda.set_per_process_memory_fraction` caps this process at 24 GiB of the GPU, the CLI runs in the same
process with its defaults (8 packed rows of 1,024 tokens a step, the budget read from the card) for a few steps
over the bundled seed tasks repeated, and the line printed says whether it finished and at what peak.

    python bench/finetune_24gb.py [--steps 4]          # the GPU machine
    .venv/bin/python bench/finetune_24gb.py --tiny     # the CPU: a tiny Falcon and a 0.6 GiB budget instead
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--card-gib", type=float, default=24.0)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, FalconConfig

    from workbench.cli import app
    from workbench.core.catalog import SEED_TASKS
    from workbench.core.models import linear_subclasses_as_linear
    from workbench.core.tiny import TinySpec, build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="finetune-24gb-"))
    base = build_tiny_model(work / "tiny", TinySpec(arch="falcon"))
    if not args.tiny:  # falcon-7b's shapes with the tiny tokenizer (ids below its vocabulary), bf16 on disk
        torch.manual_seed(0)
        with torch.device("cuda"), linear_subclasses_as_linear("falcon"):
            model = AutoModelForCausalLM.from_config(FalconConfig(), dtype=torch.bfloat16)
        model.save_pretrained(work / "falcon-7b-shapes")
        del model
        torch.cuda.empty_cache()
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (base / name).exists():
                (work / "falcon-7b-shapes" / name).write_bytes((base / name).read_bytes())
        base = work / "falcon-7b-shapes"
    seeds = [json.loads(line) for line in SEED_TASKS.read_text().splitlines() if line.strip()]
    with open(work / "data.jsonl", "w") as out:  # enough distinct records for the steps (duplicates are refused)
        for copy in range(8):
            for seed in seeds:
                out.write(json.dumps({**{k: v for k, v in seed.items() if k != "id"},
                                      "instruction": f"{seed['instruction']} (variant {copy})"}) + "\n")

    budget = []
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory / 1024 ** 3
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.card_gib / total))
        torch.cuda.reset_peak_memory_stats()
        budget = ["--budget-gib", str(args.card_gib)]
    else:
        budget = ["--budget-gib", "0.6"]
    command = ["finetune", "--base", str(base), "--data", str(work / "data.jsonl"), "-o", str(work / "adapter"),
               "--max-steps", str(args.steps), *budget]
    start = time.perf_counter()
    try:
        app(command, standalone_mode=False)
        finished = True
    except torch.OutOfMemoryError as e:
        finished, error = False, str(e).splitlines()[0]
    seconds = time.perf_counter() - start
    if finished:
        m = json.loads((work / "adapter" / "manifest.json").read_text())
        print(f"finetune default on a {args.card_gib:g} GiB card: finished {m['steps']} steps in {seconds:.0f} s, "
              f"peak {m['peak_memory_gib']:.1f} GiB, estimated {m['estimated_memory_gib']:.1f} GiB, "
              f"{m['rows_per_pass']} rows per pass, {len(m['out_of_memory_halvings'])} out-of-memory halvings")
    else:
        print(f"finetune default on a {args.card_gib:g} GiB card: OUT OF MEMORY after {seconds:.0f} s: {error}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""LoRA finetuning on curated records: 8-bit (LLM.int8) base + LoRA by default on CUDA, verified quantization,
loss on response tokens only, padding-free packing, checkpoints and resume, a memory preflight, and merging.

    report = dry_run(records, tokenizer, config)        # data.py: one example with masked/trained spans, checks
    estimate = preflight(base, config, budget_gib=24)   # memory.py: rows per pass that fit; refuses what cannot
    result = run(base, data, config, out)               # stage.py: the stage: adapter + manifest.json + loss.png
                                                        # by train.py (SFT; step.py: its training step) or dpo.py
    merge(adapter_dir, out_dir)                         # merge.py: 16-bit base + adapter merged, logits checked
    train_dpo(base, pairs, out_dir, config)             # dpo.py: trl's DPO on preference pairs (run() calls it)

The standard recipe pads each batch to its longest example; with instruction data (median ~180 tokens, a long
tail) over half the computed tokens are padding. Packing concatenates examples into one row with position ids
that restart at each example: transformers' mask creation reads the restarts as separate sequences (a
block-diagonal causal mask for sdpa/eager, varlen for flash attention), so no example attends to another and no
compute goes to padding. `tests/pipelines/test_finetune.py` checks that the packed loss equals the padded one.
"""

from pipelines.finetune.config import (
    IGNORE,
    LORA_TARGETS,
    SPEED_ONLY,
    FinetuneConfig,
    lora_targets,
    resolve_quant,
)
from pipelines.finetune.data import (
    DryRun,
    Encoded,
    PackedCollator,
    PaddedCollator,
    Prepared,
    dry_run,
    encode,
    pack,
    prepare,
    preview,
    prompt_text,
    unpacked,
    uses_chat_template,
)
from pipelines.finetune.dpo import load_pairs, preview_pairs, train_dpo
from pipelines.finetune.memory import GIB, Estimate, budget_of_device, estimate_memory, plan, preflight
from pipelines.finetune.merge import merge
from pipelines.finetune.stage import FinetuneRun, run
from pipelines.finetune.train import FinetuneResult, plot_losses, train

__all__ = ["IGNORE", "LORA_TARGETS", "SPEED_ONLY", "FinetuneConfig", "lora_targets", "resolve_quant", "DryRun",
           "Encoded", "PackedCollator", "PaddedCollator", "Prepared", "dry_run", "encode", "pack", "prepare", "preview",
           "prompt_text", "unpacked", "uses_chat_template", "GIB", "Estimate", "budget_of_device", "estimate_memory",
           "plan", "preflight", "merge", "load_pairs", "preview_pairs", "train_dpo", "FinetuneResult", "FinetuneRun",
           "plot_losses", "run", "train"]

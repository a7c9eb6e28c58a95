"""Merging an adapter into its base, reloaded in 16-bit (never into an 8-bit model), with a logits check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from workbench.core.errors import ConfigError, InputError
from workbench.core.io import atomic_write_json, refuse_overwrite
from workbench.core.prompts import format_prompt


def merge(adapter_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16", base: str | None = None,
          prompts: list[str] | None = None) -> dict[str, Any]:
    """Reload the base in 16-bit (never merge into an 8-bit model), merge the adapter, save, and check that the
    merged model's logits equal base + adapter on a few prompts."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from workbench.core.models import _load_error, load_tokenizer, resolve_dtype

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    refuse_overwrite(out_dir, [adapter_dir, *([base] if base else [])], "this merge")
    try:
        peft_config = PeftConfig.from_pretrained(str(adapter_dir))
    except (OSError, ValueError) as e:
        raise InputError(f"{adapter_dir}: not a peft adapter ({type(e).__name__})") from e
    base = base or peft_config.base_model_name_or_path
    torch_dtype = resolve_dtype(dtype, "cpu")
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise _load_error(base, e) from e
    tokenizer = load_tokenizer(str(adapter_dir)) if (adapter_dir / "tokenizer_config.json").exists() else \
        load_tokenizer(base)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    prompts = prompts or [format_prompt("Do I need to know programming to apply?"),
                          format_prompt("Which programmes start in the spring?"), "The university offers"]
    batch = [tokenizer(p, return_tensors="pt")["input_ids"] for p in prompts]
    with torch.inference_mode():
        before = [model(ids).logits.float() for ids in batch]
        merged = model.merge_and_unload()
        after = [merged(ids).logits.float() for ids in batch]
    difference = max(float((a - b).abs().max()) for a, b in zip(before, after))
    scale = max(float(b.abs().max()) for b in before)
    # fp32 merges agree to rounding; 16-bit ones to a few units in the last place of 16-bit numbers.
    tolerance = 1e-4 * max(1.0, scale) if torch_dtype == torch.float32 else 2e-2 * max(1.0, scale)
    if not math.isfinite(difference) or difference > tolerance:
        raise ConfigError(f"merged logits differ from base + adapter by {difference:.3g} (tolerance {tolerance:.3g})",
                          hint="keep the adapter separate (PeftModel.from_pretrained) instead of merging")
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    report = {"base_model": base, "adapter": str(adapter_dir), "dtype": str(torch_dtype).removeprefix("torch."),
              "max_logit_difference": difference, "tolerance": tolerance, "prompts": len(prompts)}
    atomic_write_json(out_dir / "merge.json", report)
    return report

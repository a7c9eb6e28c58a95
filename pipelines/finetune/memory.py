"""The memory preflight: peak training memory estimated from a model's shapes (no weights loaded), and a
configuration that will not fit refused with one that does."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.finetune.config import FinetuneConfig, lora_targets, resolve_quant
from workbench.core.errors import ConfigError


@dataclass
class Estimate:
    total_gib: float
    parts: dict[str, float]  # GiB by what holds it
    config: FinetuneConfig
    quant: str

    def describe(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.parts.items())


GIB = 1024 ** 3


def _shapes(base: str):
    """Parameter counts of a model without loading its weights (meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workbench.core.models import _load_error

    try:
        model_config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as e:
        raise _load_error(base, e) from e
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    return model_config, model


def estimate_memory(model_config, model, config: FinetuneConfig, quant: str, device: str = "cuda") -> Estimate:
    """Peak training memory, from the shapes. Calibrated on the measured falcon-7b anchors (H200, batch 8 x 512,
    checkpointing: 8-bit 13.0 GiB, bf16 17.5 GiB); the formula gives 12.8 and 17.8."""
    import torch

    targets = set(lora_targets(model))
    linear, other, lora = 0, 0, 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in ("lm_head", "embed_out"):
            linear += module.weight.numel()
            if name.rsplit(".", 1)[-1] in targets:
                lora += config.rank * (module.in_features + module.out_features)
    total = sum(p.numel() for p in model.parameters())
    other = total - linear
    half = 4 if device == "cpu" else 2  # fp32 on the CPU, bf16 on GPUs
    per_linear = {"none": half, "8bit": 1, "4bit": 0.5}[quant]
    hidden = getattr(model_config, "hidden_size", 0) or getattr(model_config, "n_embd", 0)
    layers = getattr(model_config, "num_hidden_layers", 0) or getattr(model_config, "n_layer", 0)
    vocab = model_config.vocab_size
    tokens = config.batch_size * config.max_length  # a packed step is full; a padded one at most this
    per_layer = tokens * hidden * 34 * half / 2  # Korthikanti et al.: 34 bytes per token x hidden in 16-bit
    activations = (layers * tokens * hidden * half + per_layer) if config.grad_checkpointing else layers * per_layer
    parts = {
        "weights": (linear * per_linear + other * half) / GIB,
        "LoRA + optimizer": lora * 16 / GIB,  # fp32 weight, gradient, two Adam moments
        "activations": activations / GIB,
        "logits": tokens * vocab * 8 / GIB,  # fp32 logits and their gradient
        "runtime": 0.75 if device.startswith("cuda") else 0.25,
    }
    factor = 1.1 if quant != "none" else 1.0  # bitsandbytes' int8 state and buffers
    return Estimate(sum(parts.values()) * factor, {k: round(v * factor, 2) for k, v in parts.items()}, config, quant)


def preflight(base: str, config: FinetuneConfig, budget_gib: float | None, device: str = "cuda") -> Estimate:
    """The estimate for this configuration; with a budget, refuse one that will not fit and name one that does."""
    model_config, model = _shapes(base)
    quant = resolve_quant(config, device)
    estimate = estimate_memory(model_config, model, config, quant, device)
    if budget_gib is None or estimate.total_gib <= budget_gib:
        return estimate
    for candidate, q in _smaller(config, quant):
        fits = estimate_memory(model_config, model, candidate, q, device)
        if fits.total_gib <= budget_gib:
            change = {k: v for k, v in candidate.model_dump().items() if v != config.model_dump()[k]}
            if q != quant:
                change["quant"] = q
            flags = " ".join(f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else
                             f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in change.items())
            raise ConfigError(f"this configuration needs about {estimate.total_gib:.1f} GiB ({estimate.describe()}), "
                              f"over the {budget_gib:g} GiB budget",
                              hint=f"{flags} needs about {fits.total_gib:.1f} GiB")
    raise ConfigError(f"this configuration needs about {estimate.total_gib:.1f} GiB ({estimate.describe()}); "
                      f"nothing smaller that keeps --max-length {config.max_length} fits {budget_gib:g} GiB",
                      hint="a smaller --max-length or a smaller base model")


def _smaller(config: FinetuneConfig, quant: str):
    """Cheaper configurations in the order to try: checkpointing, smaller batches (same effective batch), 4-bit."""
    steps = [config] if config.grad_checkpointing else [config.model_copy(update={"grad_checkpointing": True})]
    current = steps[0]
    while current.batch_size > 1:
        current = current.model_copy(update={"batch_size": current.batch_size // 2,
                                             "grad_accum": current.grad_accum * 2})
        steps.append(current)
    for candidate in steps:
        yield candidate, quant
    if quant != "4bit":
        for candidate in steps:
            yield candidate, "4bit"


def budget_of_device(device: str) -> float | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / GIB
    return None

"""The memory preflight: peak training memory estimated component by component from a model's shapes (no weights
loaded), the rows per pass that fit a budget, and a configuration that cannot fit refused, naming what would."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.finetune.config import FinetuneConfig, lora_targets, resolve_quant
from workbench.core.errors import ConfigError

LOSS_CHUNK = 1024  # labelled positions whose logits exist at once (pipelines.finetune.step)


@dataclass
class Estimate:
    total_gib: float
    parts: dict[str, float]  # GiB by what holds it
    config: FinetuneConfig
    quant: str
    rows_per_pass: int = 1
    step_gib: float = 0.0  # what one pass adds at its peak, over the weights and the optimizer

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


def _width(model_config, *names: str, default: int = 0) -> int:
    return next((int(v) for n in names if (v := getattr(model_config, n, None))), default)


def estimate_memory(model_config, model, config: FinetuneConfig, quant: str, device: str = "cuda", *,
                    rows_per_pass: int | None = None, dtype_bytes: int | None = None,
                    labelled_share: float = 0.6) -> Estimate:
    """Peak training memory of `pipelines.finetune.step`'s training step, component by component, from the shapes.

    Each term names the tensors it counts; bench/finetune_memory.py measures the same components (bf16, falcon-7b
    widths, CPU: within 20% of the total, RESULTS.md). `rows_per_pass` rows of max_length tokens go through the
    model at once (default: the whole step); `labelled_share` of their positions carry a label (instruction data:
    a prompt of about a third, so ~0.6 after the response-only mask)."""
    import torch

    rows = rows_per_pass or config.batch_size
    b = dtype_bytes or (2 if device.startswith("cuda") else 4)  # bf16 on GPUs, fp32 on the CPU (resolve_dtype)
    targets = set(lora_targets(model))
    linear, lora, largest = 0, 0, 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in ("lm_head", "embed_out"):
            linear += module.weight.numel()
            largest = max(largest, module.weight.numel())
            if name.rsplit(".", 1)[-1] in targets:
                lora += config.rank * (module.in_features + module.out_features)
    other = sum(p.numel() for p in model.parameters()) - linear
    hidden = _width(model_config, "hidden_size", "n_embd")
    layers = _width(model_config, "num_hidden_layers", "n_layer")
    mlp = _width(model_config, "ffn_hidden_size", "intermediate_size", "n_inner", default=4 * hidden)
    vocab = model_config.vocab_size
    tokens = rows * config.max_length  # a packed pass is full; a padded one at most this
    labelled = tokens * labelled_share
    quantized = quant in ("8bit", "4bit")
    # With --kbit-fp32 (peft's prepare_model_for_kbit_training as it is) every parameter that is not quantized is
    # fp32 (embedding, norms, head), and with an fp32 embedding the residual stream, so every checkpoint, is fp32.
    upcast = quantized and config.kbit_fp32
    other_bytes = 4 if upcast else b
    residual = 4 if upcast else b
    weights = linear * {"none": b, "8bit": 1, "4bit": 0.5}[quant] + other * other_bytes
    # LoRA computes in fp32 (peft casts its input up): each adapted linear keeps its dropout's fp32 output and a
    # 1-byte mask, for falcon three inputs of the hidden width and one of the MLP's.
    lora_inputs = 3 * hidden + mlp
    # A layer's own tensors kept for its backward, in the compute dtype: the norm's output, query/key/value, the
    # rotated query and key, the attention output (and their gradients in backward), the MLP's two activations
    # and their gradients, the incoming gradient. Counted as 8 of the hidden width and 6 of the MLP's width: the
    # measured CPU slope at falcon-7b's widths (bench/finetune_memory.py) is 464 KB a token, this gives 450.
    layer = (8 * hidden + 6 * mlp) * b + lora_inputs * 5
    # The fused attention kernels need no score matrix (ExpandedKeyValueHeads); a packed row's mask is 1 byte a pair.
    mask = rows * config.max_length ** 2 if config.packing else 0
    # bitsandbytes' int8 matmul dequantizes a weight to its input's dtype for backward (fp32 behind a norm under
    # autocast). Its CPU path (MatMul8bitFp, read in its source and measured) also dequantizes in forward and keeps
    # each quantized linear's input on its autograd context, out of the checkpoint's reach: per layer the norm's
    # output, the attention output and the MLP activation. The CUDA path (MatMul8bitLt) keeps no input when the
    # weight is frozen (not measured: no GPU yet).
    dequantized = (largest * 4 * (2 if device == "cpu" else 1)) if quantized else 0
    bnb_inputs = layers * tokens * (2 * hidden + mlp) * b if quantized and device == "cpu" else 0
    if config.grad_checkpointing:
        # Each layer's input, kept for its recomputation, plus the final norm's input and output.
        kept = (layers + 2) * tokens * hidden * residual + mask + bnb_inputs
        redone = tokens * layer + dequantized
    else:
        kept = layers * tokens * (layer + hidden * residual) + mask
        redone = dequantized
    # The head over labelled positions in chunks of LOSS_CHUNK: the logits in the compute dtype, their fp32 copy,
    # log-softmax and gradient (measured 12 bytes a logit in bf16), plus the gathered hidden states and gradient.
    chunk = min(LOSS_CHUNK, labelled)
    loss = chunk * vocab * (b + 10) + 2 * labelled * hidden * max(b, residual)
    lora_resident = lora * 12  # fp32 adapter and AdamW's two moments
    pass_gradients = lora * 8  # the pass's gradients and the step's sum, fp32, while the step runs
    # The loss's backward finishes before the decoder's begins: the step's peak is the larger of the two phases.
    step = kept + max(redone, loss) + pass_gradients
    parts = {
        "weights": weights,
        "LoRA, gradients, optimizer": lora_resident,
        "checkpointed activations": kept,
        "one recomputed layer": redone,
        "logits and loss": loss,
        "pass gradients": pass_gradients,
        # GPU: the CUDA context, and what the caching allocator holds beyond live tensors (fragmentation);
        # CPU: allocator arenas and thread pools that appear with the first backward (measured ~50 MB).
        "runtime": (0.5 * GIB + 0.1 * step) if device.startswith("cuda") else 0.05 * GIB,
    }
    gib = {k: v / GIB for k, v in parts.items()}
    total = (weights + lora_resident + step + parts["runtime"]) / GIB
    return Estimate(total, {k: round(v, 3) for k, v in gib.items()}, config, quant, rows, step / GIB)


def preflight(base: str, config: FinetuneConfig, budget_gib: float | None, device: str = "cuda") -> Estimate:
    """The estimate for this configuration with the most rows per pass that fit the budget (all the step's rows
    when there is none); one that cannot fit even one row per pass is refused, naming what would fit."""
    model_config, model = _shapes(base)
    return plan(model_config, model, config, resolve_quant(config, device), budget_gib, device)


def halved(rows: int) -> int:
    return max(1, (rows + 1) // 2)


def plan(model_config, model, config: FinetuneConfig, quant: str, budget_gib: float | None,
         device: str = "cuda") -> Estimate:
    rows = config.batch_size
    while True:
        estimate = estimate_memory(model_config, model, config, quant, device, rows_per_pass=rows)
        if budget_gib is None or estimate.total_gib <= budget_gib or rows == 1:
            break
        rows = halved(rows)
    if budget_gib is None or estimate.total_gib <= budget_gib:
        return estimate
    raise ConfigError(f"one row of {config.max_length} tokens per pass needs about {estimate.total_gib:.1f} GiB "
                      f"({estimate.describe()}), over the {budget_gib:g} GiB budget",
                      hint=_what_fits(model_config, model, config, quant, budget_gib, device))


def _what_fits(model_config, model, config: FinetuneConfig, quant: str, budget_gib: float, device: str) -> str:
    """The first change that fits one row per pass: checkpointing, 4-bit, then a shorter --max-length."""
    changes: list[tuple[str, FinetuneConfig, str]] = []
    if not config.grad_checkpointing:
        changes.append(("--grad-checkpointing", config.model_copy(update={"grad_checkpointing": True}), quant))
        config = changes[-1][1]
    if quant in ("8bit", "none") and device.startswith("cuda"):
        changes.append(("--quant 4bit", config.model_copy(update={"quant": "4bit"}), "4bit"))
    length = config.max_length
    while length > 128:
        length = length * 3 // 4
        changes.append((f"--max-length {length}", config.model_copy(update={"max_length": length}), quant))
    for flags, candidate, q in changes:
        fits = estimate_memory(model_config, model, candidate, q, device, rows_per_pass=1)
        if fits.total_gib <= budget_gib:
            return f"{flags} needs about {fits.total_gib:.1f} GiB"
    return "a smaller base model; nothing down to --max-length 128 fits"


def budget_of_device(device: str) -> float | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / GIB
    return None

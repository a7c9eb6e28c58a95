"""LoRA finetuning on curated records: 8-bit (LLM.int8) base + LoRA by default on CUDA, verified quantization,
loss on response tokens only, padding-free packing, checkpoints and resume, a memory preflight, and merging.

    report = dry_run(records, tokenizer, config)        # one example with masked/trained spans, checks
    estimate = preflight(base, config, budget_gib=24)   # refuses what will not fit, suggests what will
    result = finetune(base, records, out_dir, config)   # a peft adapter + manifest.json + loss.png
    merge(adapter_dir, out_dir)                         # 16-bit base + adapter merged, logits checked

The standard recipe pads each batch to its longest example; with instruction data (median ~180 tokens, a long
tail) over half the computed tokens are padding. Packing concatenates examples into one row with position ids
that restart at each example: transformers' mask creation reads the restarts as separate sequences (a
block-diagonal causal mask for sdpa/eager, varlen for flash attention), so no example attends to another and no
compute goes to padding. `tests/pipelines/test_finetune.py` checks that the packed loss equals the padded one.
"""

from __future__ import annotations

import json
import math
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import ConfigError, InputError
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, RESPONSE_KEY, build_prompt, format_prompt, has_chat_template
from workbench.core.records import Record

IGNORE = -100  # label of tokens that carry no loss (the prompt, padding)

# LoRA targets per architecture. Falcon: all four linears — measured: with 8-bit layers, LoRA on only
# query_key_value + dense fails with an in-place-view error in the residual add; all four train.
LORA_TARGETS = {
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quant: Literal["auto", "none", "8bit", "4bit"] = "auto"  # auto: 8bit on CUDA, none on the CPU
    epochs: float = Field(3.0, gt=0)
    lr: float = Field(2e-4, gt=0)
    rank: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    max_length: int = Field(1024, ge=16)  # longer examples are dropped and reported, never cut mid-response
    packing: bool = True
    batch_size: int = Field(8, ge=1)  # packed: rows of max_length tokens per step; else examples per step
    grad_accum: int = Field(1, ge=1)
    grad_checkpointing: bool = True
    save_steps: int = Field(200, ge=1)
    eval_split: float = Field(0.05, ge=0, lt=1)
    seed: int = 42  # the split, the data order and LoRA's initialisation
    system_prompt: bool = False  # the course-advisor system prompt in every example
    chat_template: Literal["auto", "never"] = "auto"  # auto: the tokenizer's chat template when it has one
    max_steps: int = -1  # stop after this many optimizer steps (-1: the epochs decide)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    logging_steps: int = Field(10, ge=1)


# Fields that change speed or memory but not what is learned (they stay out of a run's fingerprint).
SPEED_ONLY = frozenset({"save_steps", "logging_steps"})


def resolve_quant(config: FinetuneConfig, device: str) -> str:
    if config.quant != "auto":
        return config.quant
    return "8bit" if device.startswith("cuda") else "none"


def lora_targets(model) -> list[str]:
    """The module names LoRA adapts for this architecture (every linear but the output head when unknown)."""
    import torch

    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__.startswith("Linear"):
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in ("lm_head", "embed_out", "score"):
                names.add(leaf)
    return sorted(names)


# --- the training examples --------------------------------------------------------------------------------------

@dataclass
class Encoded:
    record_id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def uses_chat_template(tokenizer, config: FinetuneConfig) -> bool:
    return config.chat_template == "auto" and has_chat_template(tokenizer)


def prompt_text(tokenizer, record: Record, config: FinetuneConfig) -> str:
    """The prompt part of a training example (`workbench.core.prompts.build_prompt`, shared with evaluation)."""
    return build_prompt(record.instruction, record.context, ADVISOR_SYSTEM_PROMPT if config.system_prompt else None,
                        tokenizer, config.chat_template == "auto")


def encode(tokenizer, record: Record, config: FinetuneConfig) -> Encoded:
    """Prompt and response tokenized apart (so the boundary is exact), EOS appended; labels only on the response."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token: the model could never learn to stop")
    chat = uses_chat_template(tokenizer, config)
    prompt_ids = tokenizer(prompt_text(tokenizer, record, config), add_special_tokens=not chat)["input_ids"]
    response_ids = tokenizer(record.response.strip(), add_special_tokens=False)["input_ids"]
    response_ids = [*response_ids, tokenizer.eos_token_id]
    return Encoded(record.id, [*prompt_ids, *response_ids], [IGNORE] * len(prompt_ids) + response_ids)


@dataclass
class Prepared:
    train: list[Encoded]
    eval: list[Encoded]
    too_long: list[tuple[Record, int]] = field(default_factory=list)  # (record, tokens): dropped, reported
    no_response: list[Record] = field(default_factory=list)


def prepare(records: list[Record], tokenizer, config: FinetuneConfig) -> Prepared:
    """Encode, drop (and report) what cannot be trained whole, split off the eval set by the seed."""
    kept, too_long, empty = [], [], []
    for record in records:
        if not record.response.strip():
            empty.append(record)
            continue
        encoded = encode(tokenizer, record, config)
        if len(encoded.input_ids) > config.max_length:
            too_long.append((record, len(encoded.input_ids)))
        else:
            kept.append(encoded)
    if not kept:
        raise InputError(f"no trainable examples: {len(too_long)} longer than --max-length {config.max_length}, "
                         f"{len(empty)} without a response")
    order = list(range(len(kept)))
    random.Random(config.seed).shuffle(order)
    n_eval = int(round(len(kept) * config.eval_split)) if len(kept) > 1 else 0
    eval_ids = set(order[:n_eval])
    return Prepared([e for i, e in enumerate(kept) if i not in eval_ids],
                    [e for i, e in enumerate(kept) if i in eval_ids], too_long, empty)


def pack(examples: list[Encoded], max_length: int, seed: int) -> list[dict[str, list[int]]]:
    """Examples into rows of at most max_length tokens (first fit over a seeded shuffle), position ids
    restarting at each example: the attention mask is built from those restarts, so examples stay apart."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    rows: list[dict[str, list[int]]] = []
    for example in order:
        n = len(example.input_ids)
        row = next((r for r in rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"] += example.input_ids
        # The first token of each example predicts nothing across the boundary (it is a prompt token anyway).
        row["labels"] += [IGNORE, *example.labels[1:]]
        row["position_ids"] += list(range(n))
    return rows


def unpacked(examples: list[Encoded]) -> list[dict[str, list[int]]]:
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


class PackedCollator:
    """Packed rows as a batch. A row shorter than the longest is filled with pad tokens that form a segment of
    their own (positions restart at 0, no labels), so nothing attends to them and they attend to nothing real."""

    def __init__(self, pad_id: int = 0):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        fill = [longest - len(r["input_ids"]) for r in rows]
        batch = {"input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * n for r, n in zip(rows, fill)]),
                 "labels": torch.tensor([r["labels"] + [IGNORE] * n for r, n in zip(rows, fill)]),
                 "position_ids": torch.tensor([r["position_ids"] + list(range(n)) for r, n in zip(rows, fill)])}
        # transformers reads restarting position ids as separate sequences only without a KV cache.
        return {**batch, "use_cache": False}


class PaddedCollator:
    """The standard recipe: pad to the longest example of the batch (right), labels -100 on padding."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        pad = [longest - len(r["input_ids"]) for r in rows]
        return {"input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * p for r, p in zip(rows, pad)]),
                "labels": torch.tensor([r["labels"] + [IGNORE] * p for r, p in zip(rows, pad)]),
                "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * p for r, p in zip(rows, pad)])}


# --- dry run ---------------------------------------------------------------------------------------------------

@dataclass
class DryRun:
    examples: int
    train: int
    eval: int
    too_long: list[tuple[str, int]]
    no_response: int
    response_key_missing: list[str]  # record ids whose prompt lacks the response key (section format)
    eos_trained: bool
    masked_text: str  # the first example's prompt (no loss)
    trained_text: str  # ... and its response (loss), EOS included
    masked_tokens: int
    trained_tokens: int
    chat_template: bool
    tokens: int  # trained tokens over the training set, one epoch


def dry_run(records: list[Record], tokenizer, config: FinetuneConfig) -> DryRun:
    prepared = prepare(records, tokenizer, config)
    chat = uses_chat_template(tokenizer, config)
    missing = [] if chat else [e.record_id for e in prepared.train + prepared.eval
                               if RESPONSE_KEY not in tokenizer.decode(
                                   [t for t, label in zip(e.input_ids, e.labels) if label == IGNORE])]
    first = prepared.train[0]
    cut = next(i for i, label in enumerate(first.labels) if label != IGNORE)  # where the response starts
    everything = prepared.train + prepared.eval
    eos_trained = all(e.labels[-1] == tokenizer.eos_token_id for e in everything)
    return DryRun(len(records), len(prepared.train), len(prepared.eval),
                  [(r.id, n) for r, n in prepared.too_long], len(prepared.no_response), missing, eos_trained,
                  tokenizer.decode(first.input_ids[:cut]), tokenizer.decode(first.input_ids[cut:]),
                  cut, len(first.input_ids) - cut, chat, sum(e.trained for e in prepared.train))


# --- memory preflight ------------------------------------------------------------------------------------------

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


# --- training --------------------------------------------------------------------------------------------------

@dataclass
class FinetuneResult:
    out_dir: Path
    manifest: dict[str, Any]


def _peak_memory_gib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB


def _checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first: Trainer writes trainer_state.json after the weights, optimizer and RNG
    states, so a checkpoint without it was cut short by a kill and is skipped."""
    found = [p for p in (out_dir / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def finetune(base: str, records: list[Record], out_dir: str | Path, config: FinetuneConfig, *,
             resume: bool = False, device: str = "auto", data_sha256: str | None = None,
             data_path: str | None = None, budget_gib: float | None = None, progress=None) -> FinetuneResult:
    """Train a LoRA adapter on `records`; writes the adapter, manifest.json and loss.png to out_dir."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from workbench.core.models import get_model, resolve_device
    from workbench.core.runs import package_versions

    out_dir = Path(out_dir)
    device = resolve_device(device)
    quant = resolve_quant(config, device)
    existing = _checkpoints(out_dir)
    if existing and not resume:
        raise InputError(f"{out_dir} already holds checkpoints ({existing[-1].name})",
                         hint="--resume continues from the last one; or choose another output folder")
    if resume and not existing:
        raise InputError(f"--resume: no checkpoint in {out_dir / 'checkpoints'}")
    run = {"base_model": base, "data_sha256": data_sha256, "records": [r.id for r in records],
           "config": config.model_dump(), "quant": quant}
    run_file = out_dir / "run.json"
    if resume and run_file.exists():
        before = json.loads(run_file.read_text())
        changed = sorted(k for k in run if before.get(k) != run[k])
        if changed:
            # Another base, data or config would not continue the same run (and not in the same data order).
            raise InputError(f"--resume: {', '.join(changed)} differ from the run in {out_dir}",
                             hint="resume with the same base, data and options, or train into a new folder")
    budget = budget_gib if budget_gib is not None else budget_of_device(device)
    estimate = preflight(base, config, budget, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, indent=1) + "\n")

    loaded = get_model(base, quant=quant, device=device)
    model, tokenizer = loaded.model, loaded.tokenizer
    tokenizer.padding_side = "right"
    prepared = prepare(records, tokenizer, config)
    if quant != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.grad_checkpointing)
    elif config.grad_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    model.config.use_cache = False  # no KV cache in training (and packed rows need none to stay apart)
    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=lora_targets(model))
    model = get_peft_model(model, lora)

    if config.packing:
        train_rows = pack(prepared.train, config.max_length, config.seed)
        eval_rows = pack(prepared.eval, config.max_length, config.seed)
        collator = PackedCollator(tokenizer.pad_token_id)
    else:
        train_rows, eval_rows = unpacked(prepared.train), unpacked(prepared.eval)
        collator = PaddedCollator(tokenizer.pad_token_id)
    useful = sum(e.trained for e in prepared.train)
    report = ["tensorboard"] if _installed("tensorboard") else []
    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs, max_steps=config.max_steps, learning_rate=config.lr,
        warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine", logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=3,
        eval_strategy="epoch" if eval_rows else "no", seed=config.seed, data_seed=config.seed,
        gradient_checkpointing=config.grad_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.grad_checkpointing else None,
        bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported(), use_cpu=device == "cpu",
        report_to=report, remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=progress is None, optim="adamw_torch",
    )

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if progress:
                progress(state.global_step, state.max_steps)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows or None,
                      data_collator=collator, callbacks=[Progress()])
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(existing[-1]) if resume else None)
    seconds = time.perf_counter() - start
    eval_loss = trainer.evaluate()["eval_loss"] if eval_rows else None

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    history = trainer.state.log_history
    steps_done = trainer.state.global_step
    epochs_done = trainer.state.epoch or 0
    manifest = {
        # The training file, so that evaluation can check it against eval suites (contamination).
        "base_model": base, "data": data_path, "data_sha256": data_sha256, "records": len(records),
        "train_examples": len(prepared.train), "eval_examples": len(prepared.eval),
        "dropped_too_long": [{"id": r.id, "tokens": n} for r, n in prepared.too_long],
        "dropped_no_response": [r.id for r in prepared.no_response],
        "config": config.model_dump(), "quant": quant, "quantized_layers": loaded.quantized_layers,
        "device": device, "lora_targets": lora_targets(model.get_base_model()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "versions": package_versions(),
        "train_loss": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "eval_loss": [{"epoch": h["epoch"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        "final_eval_loss": eval_loss, "steps": steps_done, "epochs": epochs_done,
        "train_runtime_s": round(seconds, 2), "resumed": bool(resume),
        # Label-bearing tokens trained per second (this process's share when resumed).
        "useful_tokens_per_s": round(useful * epochs_done / seconds, 1) if seconds else None,
        "peak_memory_gib": round(_peak_memory_gib(device), 3), "estimated_memory_gib": round(estimate.total_gib, 3),
        "train_loss_mean": output.training_loss,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    from workbench.core.export import model_card

    (out_dir / "README.md").write_text(model_card(manifest))  # replaces peft's empty template
    plot_losses(manifest, out_dir / "loss.png")
    return FinetuneResult(out_dir, manifest)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def plot_losses(manifest: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    train = manifest["train_loss"]
    axes.plot([p["step"] for p in train], [p["loss"] for p in train], label="train")
    if manifest["eval_loss"] and manifest["steps"]:
        per_epoch = manifest["steps"] / max(manifest["epochs"], 1e-9)
        axes.plot([p["epoch"] * per_epoch for p in manifest["eval_loss"]], [p["loss"] for p in manifest["eval_loss"]],
                  "o-", label="eval")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    base = Path(manifest["base_model"])
    precision = {"none": "full precision", "8bit": "8-bit", "4bit": "4-bit"}.get(manifest["quant"], manifest["quant"])
    axes.set_title(f"LoRA on {'/'.join(base.parts[-2:])} ({precision}), {manifest['train_examples']} examples")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# --- merging ---------------------------------------------------------------------------------------------------

def merge(adapter_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16", base: str | None = None,
          prompts: list[str] | None = None) -> dict[str, Any]:
    """Reload the base in 16-bit (never merge into an 8-bit model), merge the adapter, save, and check that the
    merged model's logits equal base + adapter on a few prompts."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from workbench.core.models import _load_error, load_tokenizer, resolve_dtype

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
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
    (out_dir / "merge.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

"""DPO on preference pairs (`workbench finetune --method dpo`): trl's DPOTrainer (the loss is trl's, not ours) on a
LoRA adapter over the base, loaded as for SFT (8-bit verified on CUDA), with the same checkpoints, resume, memory
preflight, manifest and plot.

    pairs = load_pairs(path, problems)   # any JSONL/Parquet with prompt, chosen, rejected (other columns kept)
    result = train_dpo(base, pairs, out_dir, config, ref_adapter=SFT_ADAPTER)

The reference is the model DPO must not drift from. Without `ref_adapter` it is the base (trl disables the LoRA
adapter for the reference pass); with one (an SFT adapter) the trained adapter starts as a copy of it and trl keeps a
frozen copy as the reference, so the result is SFT + DPO in one adapter that plain peft loads over the base.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.finetune.config import FinetuneConfig, lora_targets, resolve_quant
from pipelines.finetune.memory import budget_of_device, preflight
from pipelines.finetune.train import AdapterManifest
from pipelines.preferences import PAIR_COLUMNS, pair_record
from workbench.core.distributed import process_device, world_size
from workbench.core.errors import ConfigError, InputError
from workbench.core.io import Problem, record_rows
from workbench.core.runs import package_versions

# trl's logged metrics, as the manifest keeps them per step (and the held-out ones with "eval_" in front)
DPO_METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def load_pairs(path: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """The rows of a pairs file (JSONL or Parquet) with non-empty string prompt, chosen and rejected; any other
    row is a problem naming its line and field. A file with no pair at all is refused."""
    pairs = []
    for line, row, raw in record_rows(path, problems):
        bad = next((c for c in PAIR_COLUMNS if not isinstance(row.get(c), str) or not row[c].strip()), None)
        if bad:
            problems.append(Problem(str(path), line, bad, "missing, empty or not a string (a preference pair needs "
                                    "prompt, chosen and rejected)", raw))
            continue
        if row["chosen"].strip() == row["rejected"].strip():  # DPO's loss has nothing to push apart: ln 2 forever
            problems.append(Problem(str(path), line, "rejected", "the same text as chosen: nothing to prefer", raw))
            continue
        pairs.append(row)
    if not pairs:
        records = problems and all('"instruction"' in p.raw and '"chosen"' not in p.raw for p in problems)
        raise InputError(f"{path}: no preference pair (prompt, chosen, rejected) to train on"
                         + (": this looks like a records file (instruction, response)" if records else ""),
                         hint="train on records with --method sft" if records else
                         "`workbench data export --format dpo` writes them")
    return pairs


@dataclass(frozen=True)
class DPOManifest(AdapterManifest):
    """A typed view of the manifest.json `train_dpo` writes in the adapter folder, and what a command prints of it."""

    @property
    def ref_adapter(self) -> str | None:
        return self.data["ref_adapter"]

    @property
    def dpo_steps(self) -> list[dict[str, Any]]:
        """trl's metrics (DPO_METRICS) at each logged step."""
        return self.data["dpo_steps"]

    @property
    def held_out(self) -> dict[str, float | None] | None:
        """trl's metrics on the held-out pairs (None without any)."""
        return self.data["held_out"]

    def summary_lines(self, folder: str) -> list[str]:
        """What DPO made, as a command prints it: the adapter in FOLDER and its reference, loss, reward accuracy
        and margin from the first logged step to the last, on the held-out pairs, and memory."""
        steps = self.dpo_steps
        first, last = (steps[0], steps[-1]) if steps else ({}, {})
        reference = f"the SFT adapter {self.ref_adapter}" if self.ref_adapter else "the base"
        lines = [f"DPO adapter in {folder}: {self.steps} steps, {self.epochs:.2f} epochs on {self.train_examples:,} "
                 f"pairs ({self.quant}), reference {reference}"]
        if steps:
            lines.append(f"loss {first['loss']:.3f} -> {last['loss']:.3f}; reward accuracy "
                         f"{first['rewards/accuracies']:.2f} -> {last['rewards/accuracies']:.2f}; margin "
                         f"{first['rewards/margins']:.3f} -> {last['rewards/margins']:.3f}")
        if self.held_out:
            held = self.held_out
            lines.append(f"held out ({self.eval_examples:,} pairs): reward accuracy {held['rewards/accuracies']:.2f}, "
                         f"margin {held['rewards/margins']:.3f}")
        lines.append(f"peak memory {self.peak_memory_gib:.2f} GiB (estimated {self.estimated_memory_gib:.2f}); "
                     "manifest.json and loss.png in the adapter folder")
        return lines


@dataclass
class DPOResult:
    out_dir: Path
    manifest: dict[str, Any]
    too_long: list[tuple[dict, int]] = field(default_factory=list)  # (pair, tokens): dropped, reported


def _tokens(tokenizer, pair: dict[str, Any]) -> int:
    return max(len(tokenizer(pair["prompt"] + pair[side])["input_ids"]) for side in ("chosen", "rejected")) + 1


def _steps(history: list[dict], prefix: str = "") -> list[dict[str, Any]]:
    """trl's logged metrics per step (train: prefix ""; held out: "eval_")."""
    rows = []
    for entry in history:
        if f"{prefix}rewards/margins" in entry:
            rows.append({"step": entry.get("step"), "epoch": entry.get("epoch"),
                         **{m: entry.get(f"{prefix}{m}") for m in DPO_METRICS}})
    return rows


@dataclass
class DPODryRun:
    pairs: int
    too_long: list[tuple[str, int]]  # (pair id, tokens)
    prompt: str  # the first pair's prompt (no loss), chosen and rejected (what DPO compares), with token counts
    chosen: str
    rejected: str
    tokens: tuple[int, int, int]


def preview_pairs(base: str, data: Path, config: FinetuneConfig) -> tuple[DPODryRun, list[Problem]]:
    """`finetune --method dpo --dry-run`: the pairs as the tokenizer sees them; nothing is trained."""
    from workbench.core.models import load_tokenizer

    problems: list[Problem] = []
    pairs = load_pairs(data, problems)
    tokenizer = load_tokenizer(base)
    lengths = [(pair_record(p).id, _tokens(tokenizer, p)) for p in pairs]
    first = pairs[0]
    counts = tuple(len(tokenizer(first[c], add_special_tokens=c == "prompt")["input_ids"]) for c in PAIR_COLUMNS)
    return DPODryRun(len(pairs), [(i, n) for i, n in lengths if n > config.max_length], first["prompt"],
                     first["chosen"], first["rejected"], counts), problems


def fitting_batch(config: FinetuneConfig, rows_per_pass: int) -> tuple[int, int]:
    """(pairs per forward, accumulation steps) for the same update: DPO puts a pair's chosen and rejected through
    together, so a pass of `rows_per_pass` rows holds half as many pairs."""
    pairs = max(1, rows_per_pass // 2)
    per_pass = max(d for d in range(1, config.batch_size + 1) if config.batch_size % d == 0 and d <= pairs)
    return per_pass, config.grad_accum * config.batch_size // per_pass


def train_dpo(base: str, pairs: list[dict[str, Any]], out_dir: str | Path, config: FinetuneConfig, *,
              ref_adapter: str | None = None, resume: bool = False, device: str = "auto",
              data_sha256: str | None = None, data_path: str | None = None, budget_gib: float | None = None,
              progress=None, say=None) -> DPOResult:
    """DPO on `pairs`; writes the adapter, manifest.json, README.md and loss.png to out_dir."""
    import datasets
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from trl import DPOConfig, DPOTrainer

    from pipelines.finetune.step import Progress
    from pipelines.finetune.train import (
        _peak_memory_gib,
        begin,
        load_trainable,
        run_trainer,
        save_adapter,
        suite_during_training,
        training_arguments,
    )
    from workbench.core.models import resolve_device

    out_dir = Path(out_dir)
    device = process_device(resolve_device(device))
    quant = resolve_quant(config, device)
    if ref_adapter:
        _check_adapter(ref_adapter, base)
    run = {"base_model": base, "data_sha256": data_sha256, "config": config.model_dump(), "quant": quant,
           "ref_adapter": str(Path(ref_adapter).resolve()) if ref_adapter else None,
           "pairs": [pair_record(p).id for p in pairs], "processes": world_size()}
    existing = begin(out_dir, resume, run, config)
    budget = budget_gib if budget_gib is not None else budget_of_device(device)
    # A step puts 2 x batch_size sequences (each pair's chosen and rejected) through the model, then the reference.
    estimate = preflight(base, config.model_copy(update={"batch_size": 2 * config.batch_size}), budget, device)
    per_pass, accumulation = fitting_batch(config, estimate.rows_per_pass)
    if say and per_pass < config.batch_size:
        say(f"Memory budget {budget:g} GiB: {per_pass} of the {config.batch_size} pairs of a step at once "
            f"({accumulation // config.grad_accum} accumulated passes, the same update), estimated "
            f"{estimate.total_gib:.1f} GiB")
    loaded, model = load_trainable(base, config, quant, device, out_dir, run)
    tokenizer = loaded.tokenizer
    kept, too_long = [], []
    for pair in pairs:
        tokens = _tokens(tokenizer, pair)
        (kept if tokens <= config.max_length else too_long).append((pair, tokens))
    kept = [p for p, _ in kept]
    if not kept:
        raise InputError(f"no preference pair fits --max-length {config.max_length} "
                         f"({len(too_long):,} longer)", hint="raise --max-length")
    order = list(range(len(kept)))
    random.Random(config.seed).shuffle(order)
    held = int(len(kept) * config.eval_split) if len(kept) >= 10 else 0
    eval_pairs = [kept[i] for i in order[:held]]
    train_pairs = [kept[i] for i in order[held:]]

    torch.manual_seed(config.seed)
    if ref_adapter:  # SFT's adapter goes on training; trl copies it as the frozen reference ("ref")
        model = PeftModel.from_pretrained(model, ref_adapter, is_trainable=True)
        lora = None
    else:
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, bias="none",
                          task_type="CAUSAL_LM", target_modules=lora_targets(model))
        model = get_peft_model(model, lora)

    def columns(rows):
        return datasets.Dataset.from_list([{c: r[c] for c in PAIR_COLUMNS} for r in rows])

    arguments = training_arguments(config, out_dir, device, bool(eval_pairs), progress)
    arguments.update(per_device_train_batch_size=per_pass, per_device_eval_batch_size=per_pass,
                     gradient_accumulation_steps=accumulation)
    args = DPOConfig(**arguments, beta=config.beta, max_length=config.max_length, padding_free=False,
                     precompute_ref_log_probs=False, dataset_num_proc=None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    suite_eval = suite_during_training(config, out_dir, tokenizer, say)
    datasets.disable_progress_bars()
    trainer = DPOTrainer(model=model, args=args, train_dataset=columns(train_pairs),
                         eval_dataset=columns(eval_pairs) if eval_pairs else None, processing_class=tokenizer,
                         callbacks=[Progress(progress), *([suite_eval] if suite_eval else [])])
    trained = run_trainer(trainer, model, out_dir, config, suite_eval, str(existing[-1]) if resume else None, say)
    held_out = trainer.evaluate() if eval_pairs else {}

    history = trainer.state.log_history
    steps = _steps(history)
    manifest = {
        "method": "dpo", "base_model": base, "ref_adapter": run["ref_adapter"], "data": data_path,
        "data_sha256": data_sha256, "records": len(pairs), "train_examples": len(train_pairs),
        "eval_examples": len(eval_pairs), "dropped_too_long": [{"id": pair_record(p).id, "tokens": n}
                                                                 for p, n in too_long],
        "config": config.model_dump(), "quant": quant, "quantized_layers": loaded.quantized_layers,
        "device": device, "lora_targets": lora_targets(model.get_base_model()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "versions": package_versions(),
        # trl's metrics per logged step: loss, rewards of chosen and rejected, reward accuracy, margins
        "dpo_steps": steps, "dpo_eval": _steps(history, "eval_"),
        "held_out": {m: held_out.get(f"eval_{m}") for m in DPO_METRICS} if held_out else None,
        "train_loss": [{"step": s["step"], "loss": s["loss"]} for s in steps if s["loss"] is not None],
        "eval_loss": [{"epoch": h["epoch"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        "final_eval_loss": held_out.get("eval_loss"), "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch or 0, "train_runtime_s": round(trained.seconds, 2), "resumed": bool(resume),
        "peak_memory_gib": round(_peak_memory_gib(device), 3), "estimated_memory_gib": round(estimate.total_gib, 3),
        "budget_gib": budget, "pairs_per_pass": per_pass, "accumulation_steps": accumulation,
        # Pairs per optimizer step: a step's pairs on each process, accumulated, over every process.
        "processes": world_size(), "effective_batch_rows": config.batch_size * config.grad_accum * world_size(),
        "train_loss_mean": trained.output.training_loss,
        "useful_tokens_per_s": None, "rows_per_pass": per_pass, "out_of_memory_halvings": 0,
        **trained.suite_entries(),
    }
    save_adapter(model, tokenizer, out_dir, manifest)
    return DPOResult(out_dir, manifest, too_long)


def _check_adapter(adapter: str, base: str) -> None:
    """A --ref-adapter must be a LoRA adapter folder made for this base."""
    import json

    config_file = Path(adapter) / "adapter_config.json"
    if not config_file.exists():
        raise InputError(f"--ref-adapter {adapter}: no adapter_config.json (not a peft adapter folder)")
    named = json.loads(config_file.read_text()).get("base_model_name_or_path")
    same = named == base or (named and Path(named).exists() and Path(base).exists()
                             and Path(named).resolve() == Path(base).resolve())
    if not same:
        raise ConfigError(f"--ref-adapter {adapter} was trained on {named}, not on --base {base}",
                          hint="give the base the adapter was trained on")

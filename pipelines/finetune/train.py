"""Training a LoRA adapter (SFT): the base loaded (8-bit verified on CUDA),
LoRA on the architecture's linears, transformers' Trainer over packed rows, checkpoints and resume, then the adapter,
its manifest, a model card and the loss plot."""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.finetune.config import FinetuneConfig, lora_targets, resolve_quant
from pipelines.finetune.data import PackedCollator, PaddedCollator, pack, prepare, unpacked
from pipelines.finetune.memory import GIB, budget_of_device, preflight
from workbench.core.distributed import is_main, process_device, world_size
from workbench.core.errors import InputError
from workbench.core.export import model_card
from workbench.core.io import atomic_write_json, atomic_write_text
from workbench.core.records import Record
from workbench.core.runs import package_versions


@dataclass
class FinetuneResult:
    """What `train` made: the adapter folder and its manifest, and the records it could not train on."""

    out_dir: Path
    manifest: dict[str, Any]
    too_long: list[tuple[Record, int]] = field(default_factory=list)  # (record, tokens)
    no_response: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class AdapterManifest:
    """A typed view of the manifest.json `train` writes in the adapter folder, and what a command prints of it
    (`dpo.DPOManifest` is DPO's, which `train_dpo` writes with the keys they share)."""

    data: dict[str, Any]

    @property
    def method(self) -> str:
        return self.data.get("method", "sft")  # DPO's says dpo; SFT's has no method

    @property
    def steps(self) -> int:
        return self.data["steps"]

    @property
    def epochs(self) -> float:
        return self.data["epochs"]

    @property
    def train_examples(self) -> int:
        return self.data["train_examples"]

    @property
    def eval_examples(self) -> int:
        return self.data["eval_examples"]

    @property
    def quant(self) -> str:
        return self.data["quant"]

    @property
    def quantized_layers(self) -> int:
        return self.data["quantized_layers"]

    @property
    def losses(self) -> list[float]:
        """The training loss at each logged step."""
        return [point["loss"] for point in self.data["train_loss"]]

    @property
    def final_eval_loss(self) -> float | None:
        return self.data["final_eval_loss"]

    @property
    def useful_tokens_per_s(self) -> float | None:
        return self.data["useful_tokens_per_s"]

    @property
    def peak_memory_gib(self) -> float:
        return self.data["peak_memory_gib"]

    @property
    def estimated_memory_gib(self) -> float:
        return self.data["estimated_memory_gib"]

    @property
    def budget_gib(self) -> float | None:
        return self.data["budget_gib"]

    @property
    def batch_size(self) -> int:
        """Rows per step on each process (the config's batch size)."""
        return self.data["config"]["batch_size"]

    @property
    def rows_per_pass(self) -> int:
        return self.data["rows_per_pass"]

    @property
    def rows_per_pass_at_end(self) -> int:
        return self.data["rows_per_pass_at_end"]

    @property
    def out_of_memory_halvings(self) -> list[dict[str, int]]:
        """Each pass that ran out of memory: its step and the rows per pass from there."""
        return self.data["out_of_memory_halvings"]

    def summary_lines(self, folder: str) -> list[str]:
        """What the training made, as a command prints it: the adapter in FOLDER, its steps and losses, speed and
        memory, and the rows per pass when fewer than a step's."""
        losses = self.losses
        first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
        evaluated = f", eval loss {self.final_eval_loss:.3f}" if self.final_eval_loss is not None else ""
        lines = [f"Adapter in {folder}: {self.steps} steps, {self.epochs:.2f} epochs on {self.train_examples:,} "
                 f"examples ({self.quant}, {self.quantized_layers} quantized layers); train loss {first:.3f} -> "
                 f"{last:.3f}{evaluated}",
                 f"{self.useful_tokens_per_s:,} trained tokens/s; peak memory {self.peak_memory_gib:.2f} GiB "
                 f"(estimated {self.estimated_memory_gib:.2f}); manifest.json and loss.png in the adapter folder"]
        rows = self.batch_size
        if self.rows_per_pass_at_end < rows:
            halvings = "".join(f"; out of memory at step {h['step']}: {h['rows_per_pass']} per pass from there"
                               for h in self.out_of_memory_halvings)
            budget = f" for the {self.budget_gib:g} GiB budget" if self.budget_gib else ""
            lines.append(f"{self.rows_per_pass} of {rows} rows per pass{budget}{halvings}")
        return lines


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


def begin(out_dir: Path, resume: bool, run: dict[str, Any], config: FinetuneConfig) -> list[Path]:
    """The complete checkpoints to resume from, after refusing a run that would mix with another: checkpoints
    present without --resume, --resume without any, or a resume whose base, data or settings (`run`) differ; and
    an eval suite or --keep-best metric that does not exist (all before the model loads)."""
    from pipelines.finetune.suite_eval import check_metric

    existing = _checkpoints(out_dir)
    if existing and not resume:
        raise InputError(f"{out_dir} already holds checkpoints ({existing[-1].name})",
                         hint="--resume continues from the last one; or choose another output folder")
    if resume and not existing:
        raise InputError(f"--resume: no checkpoint in {out_dir / 'checkpoints'}")
    run_file = out_dir / "run.json"
    if resume and run_file.exists():
        before = json.loads(run_file.read_text())
        changed = sorted(k for k in run if before.get(k) != run[k])
        if changed:
            # Another base, data or config would not continue the same run (and not in the same data order).
            raise InputError(f"--resume: {', '.join(changed)} differ from the run in {out_dir}",
                             hint="resume with the same base, data and options, or train into a new folder")
    if config.eval_suite:
        check_metric(config.eval_suite, config.keep_best)
    return existing


def load_trainable(base: str, config: FinetuneConfig, quant: str, device: str, out_dir: Path, run: dict[str, Any]):
    """The run noted in out_dir (run.json, what a resume must match), and the base model (8/4-bit verified) made
    ready for LoRA training: k-bit preparation or checkpointing with the attention mode in its recomputation, no
    KV cache. Returns (the loaded Model, the model)."""
    import torch

    from pipelines.finetune.step import checkpointing_kwargs, prepare_quantized
    from workbench.core.models import get_model

    out_dir.mkdir(parents=True, exist_ok=True)
    if is_main():
        atomic_write_json(out_dir / "run.json", run)
    loaded = get_model(base, quant=quant, device=device)
    model = loaded.model
    loaded.tokenizer.padding_side = "right"
    if quant != "none":
        bf16 = not device.startswith("cuda") or torch.cuda.is_bf16_supported()
        model = prepare_quantized(model, config.grad_checkpointing, keep_dtype=bf16 and not config.kbit_fp32)
    elif config.grad_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs())
    model.config.use_cache = False  # no KV cache in training (and packed rows need none to stay apart)
    return loaded, model


def training_arguments(config: FinetuneConfig, out_dir: Path, device: str, has_eval: bool, progress) -> dict:
    """transformers' TrainingArguments (which trl's configs extend) as every method of the workbench sets them."""
    import torch

    return dict(
        output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs, max_steps=config.max_steps, learning_rate=config.lr,
        warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine", logging_steps=config.logging_steps,
        logging_first_step=True,  # with the last step (step.Progress): a loss curve even for 2 steps
        # With an eval suite, a checkpoint at each evaluation (it is evaluated when saved).
        save_strategy="steps", save_steps=(config.eval_every or config.save_steps), save_total_limit=3,
        eval_strategy="epoch" if has_eval else "no", seed=config.seed, data_seed=config.seed,
        gradient_checkpointing=False,  # enabled by load_trainable, with the attention mode in its recomputation
        bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported(), use_cpu=device == "cpu",
        report_to=["tensorboard"] if _installed("tensorboard") else [], remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=True, optim="adamw_torch",  # progress: step.Progress
        ddp_find_unused_parameters=False,  # under several processes: every LoRA weight has a gradient each step
    )


def suite_during_training(config: FinetuneConfig, out_dir: Path, tokenizer, say=None):
    """The callback that evaluates each checkpoint on `config.eval_suite` (None without one)."""
    from pipelines.finetune.suite_eval import SuiteDuringTraining

    return SuiteDuringTraining(config.eval_suite, out_dir, tokenizer, keep_best=config.keep_best,
                               limit=config.eval_limit, say=say) if config.eval_suite else None


@dataclass
class Trained:
    """What a Trainer's run left (SFT's or DPO's): its output, how long it took, and the suite's checkpoints."""

    output: Any  # trainer.train's TrainOutput
    seconds: float
    suite_eval: list[dict[str, Any]]  # the eval suite's metrics at each checkpoint (none without a suite)
    kept: dict[str, Any] | None  # the checkpoint --keep-best kept
    metric: str | None  # --keep-best

    def suite_entries(self) -> dict[str, Any]:
        """The manifest's last entries: the suite's metrics per checkpoint and the kept checkpoint."""
        return {"suite_eval": self.suite_eval,
                "kept_checkpoint": {"step": self.kept["step"], "metric": self.metric,
                                    **self.kept["metrics"][self.metric]} if self.kept else None}


def run_trainer(trainer, model, out_dir: Path, config: FinetuneConfig, suite_eval, resume_from: str | None,
                say=None) -> Trained:
    """The end of training, for SFT and DPO alike: the Trainer run (from `resume_from`), every process waiting for
    the main one, and with --keep-best the best checkpoint's adapter put back into the model (the adapter saved
    and the held-out loss are then the best checkpoint's)."""
    from pipelines.finetune.step import train_quietly
    from pipelines.finetune.suite_eval import BEST_DIR, load_best

    start = time.perf_counter()
    output = train_quietly(trainer, resume_from)
    seconds = time.perf_counter() - start
    trainer.accelerator.wait_for_everyone()  # the main process may still be evaluating the last checkpoint
    kept = suite_eval.best() if suite_eval and config.keep_best else None
    if suite_eval and config.keep_best and (out_dir / BEST_DIR).exists():
        load_best(model, out_dir)
        if say and kept:
            say(f"Keeping step {kept['step']}: {config.keep_best} {kept['metrics'][config.keep_best]['mean']:.3f}")
    return Trained(output, seconds, suite_eval.history if suite_eval else [], kept, config.keep_best)


def save_adapter(model, tokenizer, out_dir: Path, manifest: dict[str, Any]) -> None:
    """The adapter (not trl's frozen reference copy, when DPO made one), its tokenizer, manifest.json, the model
    card and the loss plot; by the main process only (under several processes the others only computed)."""
    if not is_main():
        return
    model.save_pretrained(out_dir, selected_adapters=["default"])
    tokenizer.save_pretrained(out_dir)
    atomic_write_json(out_dir / "manifest.json", manifest)
    atomic_write_text(out_dir / "README.md", model_card(manifest))  # replaces peft's empty template
    plot_losses(manifest, out_dir / "loss.png")


def train(base: str, records: list[Record], out_dir: str | Path, config: FinetuneConfig, *,
          resume: bool = False, device: str = "auto", data_sha256: str | None = None,
          data_path: str | None = None, budget_gib: float | None = None, progress=None,
          say=None) -> FinetuneResult:
    """Train a LoRA adapter on `records`; writes the adapter, manifest.json, README.md and loss.png to out_dir.

    With a memory budget (`budget_gib`, default the GPU's memory) the rows of a step go through the model in passes
    of as many rows as the estimate fits (the update is the same); a pass that still runs out of memory is redone
    with half the rows. `say` receives one line for each such choice."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments

    from pipelines.finetune.step import PassTrainer, Progress
    from workbench.core.models import resolve_device

    out_dir = Path(out_dir)
    device = process_device(resolve_device(device))
    quant = resolve_quant(config, device)
    # The processes are part of the run: with another count the step's rows, and so the run, would differ.
    run = {"base_model": base, "data_sha256": data_sha256, "records": [r.id for r in records],
           "config": config.model_dump(), "quant": quant, "processes": world_size()}
    existing = begin(out_dir, resume, run, config)
    budget = budget_gib if budget_gib is not None else budget_of_device(device)
    estimate = preflight(base, config, budget, device)
    if say and estimate.rows_per_pass < config.batch_size:
        say(f"Memory budget {budget:g} GiB: {estimate.rows_per_pass} of the {config.batch_size} rows of a step per "
            f"pass ({-(-config.batch_size // estimate.rows_per_pass)} passes, the same update), estimated "
            f"{estimate.total_gib:.1f} GiB")
    loaded, model = load_trainable(base, config, quant, device, out_dir, run)
    tokenizer = loaded.tokenizer
    prepared = prepare(records, tokenizer, config)
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
    args = TrainingArguments(**training_arguments(config, out_dir, device, bool(eval_rows), progress))

    def say_halved(event):
        if say:
            say(f"Out of memory at step {event['step']}: redoing it with {event['rows_per_pass']} rows per pass")

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    suite_eval = suite_during_training(config, out_dir, tokenizer, say)
    callbacks: list = [Progress(progress), *([suite_eval] if suite_eval else [])]
    trainer = PassTrainer(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows or None,
                          data_collator=collator, callbacks=callbacks, rows_per_pass=estimate.rows_per_pass,
                          on_halve=say_halved)
    trained = run_trainer(trainer, model, out_dir, config, suite_eval, str(existing[-1]) if resume else None, say)
    seconds = trained.seconds
    eval_loss = trainer.evaluate()["eval_loss"] if eval_rows else None

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
        "estimated_parts_gib": estimate.parts, "budget_gib": budget,
        # Rows of a step through the model at once: chosen for the budget, halved after an out-of-memory pass.
        "rows_per_pass": estimate.rows_per_pass, "rows_per_pass_at_end": trainer.rows_per_pass,
        "out_of_memory_halvings": trainer.halvings,
        # Rows per optimizer step: the rows of a step on each process, accumulated, over every process.
        "processes": world_size(), "effective_batch_rows": config.batch_size * config.grad_accum * world_size(),
        "train_loss_mean": trained.output.training_loss, **trained.suite_entries(),
    }
    save_adapter(model, tokenizer, out_dir, manifest)
    return FinetuneResult(out_dir, manifest, prepared.too_long, prepared.no_response)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _headline(suite_name: str) -> str:
    from eval_suites.registry import load_suite

    return load_suite(suite_name).config.main_metric


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
    if manifest.get("suite_eval"):  # the suite's metric beside the loss, on its own axis, with its CI
        metric = manifest["config"].get("keep_best") or _headline(manifest["suite_eval"][0]["suite"])
        points = [(e["step"], e["metrics"][metric]) for e in manifest["suite_eval"]
                  if e["metrics"].get(metric, {}).get("mean") is not None]
        if points:
            other = axes.twinx()
            steps = [s for s, _ in points]
            other.plot(steps, [m["mean"] for _, m in points], "s-", color="tab:green", label=metric)
            other.fill_between(steps, [m["ci_low"] for _, m in points], [m["ci_high"] for _, m in points],
                               color="tab:green", alpha=0.15)
            other.set_ylabel(f"{manifest['suite_eval'][0]['suite']}: {metric}")
            other.legend(loc="upper right")
    base = Path(manifest["base_model"])
    precision = {"none": "full precision", "8bit": "8-bit", "4bit": "4-bit"}.get(manifest["quant"], manifest["quant"])
    axes.set_title(f"LoRA on {'/'.join(base.parts[-2:])} ({precision}), {manifest['train_examples']} examples")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)

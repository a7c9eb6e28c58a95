"""Evaluation while training: an eval suite's generation metrics at every checkpoint, so that training shows
whether the model answers better, not only its loss.

At each checkpoint the model being trained answers the suite's items (greedy, batched, the suite's prompts and
generation settings, through the eval runner's own `generate_answers` and `score_suite`), and each
metric is kept with its 95% bootstrap CI. The answers and scores are written into the checkpoint's folder
(`suite_eval.json`) and the metrics of all checkpoints into the adapter folder's, so a resumed run keeps what
it already evaluated instead of generating again.
With `keep_best`, the best checkpoint's adapter (by that metric, in its direction) is copied aside when it is
found — the Trainer deletes old checkpoints — and becomes the adapter at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from workbench.core.io import atomic_write_json

RESULT_FILE = "suite_eval.json"  # in a checkpoint: its answers, per-item scores and metrics
HISTORY_FILE = "suite_eval.json"  # in the adapter folder: the metrics of every checkpoint evaluated so far
BEST_DIR = "best-checkpoint"  # the best checkpoint's adapter, copied when found (the Trainer deletes old ones)


def check_metric(suite_name: str, metric: str | None, suites_dirs=None) -> None:
    """Refuse before training a suite that does not exist or a --keep-best metric the suite does not report."""
    from eval_suites.registry import load_suite
    from workbench.core.errors import ConfigError

    suite = load_suite(suite_name, suites_dirs)
    # The toxicity rate needs the screen's scorer, a second model that checkpoints are not scored with.
    usable = [m for m in suite.config.metrics if m != "toxicity_rate"]
    if metric is not None and metric not in usable:
        why = " (not measured at checkpoints: it needs the toxicity scorer)" if metric == "toxicity_rate" else ""
        raise ConfigError(f"--keep-best {metric}{why}: suite {suite_name}'s checkpoints report {', '.join(usable)}")


def evaluate_checkpoint(model, tokenizer, suite, limit: int | None, batch_size: int | None) -> dict[str, Any]:
    """The suite's metrics (value and CI) for the model as it is now; answers and per-item scores included."""
    import torch

    from eval_suites.runner import generate_answers, score_suite
    from eval_suites.statistics import bootstrap
    from workbench.core.models import Model

    items = suite.items[:limit] if limit else suite.items
    params = suite.params(batch_size=batch_size)
    device = str(next(model.parameters()).device)
    generator = Model(name="training", model=model, tokenizer=tokenizer, device=device, quant="none",
                      quantized_layers=0)
    side, cache = tokenizer.padding_side, model.config.use_cache
    was_training = model.training
    tokenizer.padding_side, model.config.use_cache = "left", True  # generation continues from the right edge
    model.eval()
    try:
        with torch.no_grad():  # all items in one call: batches sorted by length over the whole suite
            rows = generate_answers(generator, suite, items, params)
    finally:
        tokenizer.padding_side, model.config.use_cache = side, cache
        model.train(was_training)
    answers = {row["id"]: row["prediction"] for row in rows}
    scores = score_suite(suite, answers)
    metrics = {name: bootstrap(name, scores.rows, resamples=1000, seed=0) for name in suite.config.metrics}
    return {"suite": suite.name, "items": len(items), "metrics": metrics, "answers": answers,
            "rows": scores.rows, "notes": scores.notes}


def better(metric: str, value: float | None, best: float | None) -> bool:
    from eval_suites.metrics import METRICS

    if value is None:
        return False
    if best is None:
        return True
    return value > best if METRICS[metric].higher_is_better else value < best


class SuiteDuringTraining(TrainerCallback):
    """Evaluates each checkpoint the Trainer saves; `history` is one entry per checkpoint, oldest first."""

    def __init__(self, suite_name: str, out_dir: Path, tokenizer, *, keep_best: str | None = None,
                 limit: int | None = None, batch_size: int | None = None, suites_dirs=None, say=None):
        from eval_suites.registry import load_suite

        self.suite = load_suite(suite_name, suites_dirs)
        self.out_dir, self.tokenizer, self.keep_best = Path(out_dir), tokenizer, keep_best
        self.limit, self.batch_size, self.say = limit, batch_size, say
        self.history: list[dict[str, Any]] = []
        # A resumed run: what was evaluated up to the checkpoint it resumes from is read back, not generated again
        # (the Trainer may have deleted those checkpoints since); later entries belong to steps it will redo.
        complete = [int(p.parent.name.split("-")[-1])
                    for p in (self.out_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")]
        history_file = self.out_dir / HISTORY_FILE
        if history_file.exists() and complete:
            self.history = [e for e in json.loads(history_file.read_text()) if e["step"] <= max(complete)]
            best, copied = self.best() if keep_best else None, self.out_dir / BEST_DIR / "step.json"
            if best and (not copied.exists() or json.loads(copied.read_text())["step"] != best["step"]):
                # The copy is of a step after the resumed checkpoint: take the best one's again, while it exists.
                folder = self.out_dir / "checkpoints" / best["checkpoint"]
                if folder.exists():
                    self._copy_best(best, folder)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """A run resumed from a checkpoint that was saved but whose evaluation a kill cut short: evaluate it now
        (the model holds its weights), or read back the result it wrote before the kill."""
        if not state.is_world_process_zero or not state.global_step:
            return
        if any(e["step"] == state.global_step for e in self.history):
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not (folder / "trainer_state.json").exists():
            return
        try:
            result = json.loads((folder / RESULT_FILE).read_text())
        except (OSError, ValueError):
            result = None
        if result is None:
            self.on_save(args, state, control, model=model, **kwargs)
        else:
            self._add(result, folder)

    def on_save(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:  # under several processes the main one evaluates, the others wait
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        result = {"step": state.global_step, "checkpoint": folder.name,
                  **evaluate_checkpoint(model, self.tokenizer, self.suite, self.limit, self.batch_size)}
        atomic_write_json(folder / RESULT_FILE, result)
        self._add(result, folder)
        if self.say:
            shown = ", ".join(f"{k} {v['mean']:.3f}" for k, v in result["metrics"].items() if v["mean"] is not None)
            self.say(f"Step {state.global_step}: {self.suite.name} {shown}")

    def _add(self, result: dict[str, Any], folder: Path) -> None:
        entry = {"step": result["step"], "checkpoint": result["checkpoint"], "suite": result["suite"],
                 "items": result["items"], "metrics": result["metrics"]}
        self.history.append(entry)
        atomic_write_json(self.out_dir / HISTORY_FILE, self.history)
        if self.keep_best and self.best() is entry:
            self._copy_best(entry, folder)

    def _copy_best(self, entry: dict[str, Any], folder: Path) -> None:
        target = self.out_dir / BEST_DIR
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(folder / name, target / name)
        atomic_write_json(target / "step.json", {"step": entry["step"], self.keep_best:
                                                 entry["metrics"][self.keep_best]})

    def best(self) -> dict[str, Any] | None:
        best = None
        for entry in self.history:
            value = entry["metrics"][self.keep_best]["mean"]
            if better(self.keep_best, value, None if best is None else best["metrics"][self.keep_best]["mean"]):
                best = entry
        return best


def load_best(model, out_dir: Path) -> None:
    """Put the best checkpoint's adapter weights (copied aside when found) into the model (every process's)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(Path(out_dir) / BEST_DIR / "adapter_model.safetensors")))

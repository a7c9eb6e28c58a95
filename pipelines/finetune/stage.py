"""The finetune stage's entry (`run`), which the CLI and the recipe both call: SFT on records (`train`) or DPO on
preference pairs (`dpo`), with every record or pair it cannot train on dropped through the ledger."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.finetune.config import SPEED_ONLY, FinetuneConfig
from pipelines.finetune.dpo import DPOManifest, load_pairs, train_dpo
from pipelines.finetune.launch import launched_result, train_in_processes
from pipelines.finetune.train import AdapterManifest, train
from pipelines.preferences import pair_record
from workbench.core.distributed import is_main, world_size
from workbench.core.errors import InputError
from workbench.core.fingerprint import path_sha256
from workbench.core.io import Problem, load_records
from workbench.core.runs import Outputs, StepResult, reason_lines


def load_items(data: Path, config: FinetuneConfig, problems: list[Problem]) -> list:
    """What the method trains on: preference pairs (dpo) or records (sft). A file of the other kind is said so."""
    if config.method == "dpo":
        return load_pairs(data, problems)
    records = load_records(data, problems)
    if not records and problems and all(_looks_like_pair(p.raw) for p in problems):
        raise InputError(f"{data}: every line is invalid as a record (instruction, response): this looks like a DPO "
                         "pairs file (prompt, chosen, rejected)", hint="train on it with --method dpo")
    return records


def _looks_like_pair(raw: str) -> bool:
    import json

    try:
        row = json.loads(raw)
    except ValueError:
        return False
    return isinstance(row, dict) and {"prompt", "chosen", "rejected"} <= row.keys()


def train_items(base: str, items: list, out_dir: Path | str, config: FinetuneConfig, *,
                ref_adapter: str | None = None, **common):
    """SFT (`train`) or DPO (`train_dpo`, on top of `ref_adapter`) by `config.method`: what this process runs, alone
    or as one of several (`pipelines.finetune.worker`)."""
    if config.method == "dpo":
        return train_dpo(base, items, out_dir, config, ref_adapter=ref_adapter, **common)
    return train(base, items, out_dir, config, **common)


@dataclass
class FinetuneRun(StepResult):
    adapter: dict[str, Any] = field(default_factory=dict)  # the adapter's own manifest

    @property
    def adapter_manifest(self) -> AdapterManifest:
        """The adapter's own manifest, typed: DPO's (`dpo.DPOManifest`) or SFT's (`train.AdapterManifest`)."""
        manifest = AdapterManifest(self.adapter)
        return DPOManifest(self.adapter) if manifest.method == "dpo" else manifest

    def summary_lines(self) -> list[str]:
        """What the finetune stage did, as a command prints it: the adapter's own lines, then why records were
        dropped (the bad input lines are shown apart, on stderr)."""
        return self.adapter_manifest.summary_lines(self.files["adapter"]) + \
            [f"  {line}" for line in reason_lines(self.reasons)]


def run(base: str, data: Path, config: FinetuneConfig, out: Outputs, *, resume: bool = False, device: str = "auto",
        budget_gib: float | None = None, ref_adapter: str | None = None, processes: int = 1,
        accelerate_config: Path | None = None, progress=None, say=None) -> FinetuneRun:
    """The finetune stage: a LoRA adapter on the records of DATA in out["adapter"] (a folder: the adapter, its
    manifest naming the data, a model card, the loss plot); records it cannot train on are dropped with why.
    `config.method` dpo: DATA holds preference pairs (`pipelines.finetune.dpo`), on top of `ref_adapter` if given.
    `processes` > 1 (or an accelerate config file): the training runs in that many processes started by accelerate
    launch (`pipelines.finetune.launch`), this one keeping the stage's files."""
    data = Path(data)
    if Path(base).exists():  # the adapter names its base as found from anywhere, not as typed in one folder
        base = str(Path(base).resolve())
    if budget_gib is not None and not (math.isfinite(budget_gib) and budget_gib > 0):
        raise InputError(f"--budget-gib {budget_gib}: a memory budget is a positive number of GiB")
    if config.eval_suite:  # before the model loads: a suite or --keep-best metric that cannot work
        from pipelines.finetune.suite_eval import check_metric

        check_metric(config.eval_suite, config.keep_best)
    if ref_adapter and not Path(ref_adapter).is_dir():
        raise InputError(f"--ref-adapter {ref_adapter}: no such folder (an adapter folder of `workbench finetune`)")
    if ref_adapter and config.method != "dpo":
        raise InputError("--ref-adapter is the reference of DPO: use it with --method dpo")
    inputs = [data, *([Path(base)] if Path(base).exists() else []), *([Path(ref_adapter)] if ref_adapter else [])]
    ledger = out.start(config, inputs, SPEED_ONLY)
    problems: list[Problem] = []
    common = dict(resume=resume, device=device, data_sha256=path_sha256(data), data_path=str(data.resolve()),
                  budget_gib=budget_gib, progress=progress, say=say)
    launched = (processes > 1 or accelerate_config is not None) and world_size() == 1
    items = load_items(data, config, problems)
    if launched:  # the processes train and the main one writes the adapter; this one keeps the stage's files
        manifest = train_in_processes(base, data, out["adapter"], config, processes, accelerate_config,
                                      out["launch.log"], ref_adapter=ref_adapter,
                                      **{k: v for k, v in common.items() if k != "say"})
        trained = launched_result(manifest, items, pair_record if config.method == "dpo" else lambda r: r)
    else:
        trained = train_items(base, items, out["adapter"], config, ref_adapter=ref_adapter, **common)
    if config.method == "dpo":
        for pair, tokens in trained.too_long:
            ledger.drop(pair_record(pair), "longer than max_length",
                        {"tokens": tokens, "max_length": config.max_length})
        m = trained.manifest
        last = (m["dpo_steps"] or [{}])[-1]
        counts = {"pairs": m["train_examples"], "held_out": m["eval_examples"], "steps": m["steps"],
                  "reward_accuracy_x100": round(100 * (last.get("rewards/accuracies") or 0))}
    else:
        for record, tokens in trained.too_long:
            ledger.drop(record, "longer than max_length", {"tokens": tokens, "max_length": config.max_length})
        for record in trained.no_response:
            ledger.drop(record, "no response")
        m = trained.manifest
        losses = [p["loss"] for p in m["train_loss"]]
        counts = {"examples": m["train_examples"], "held_out": m["eval_examples"], "steps": m["steps"],
                  "first_loss_x100": round(100 * losses[0]) if losses else 0,
                  "last_loss_x100": round(100 * losses[-1]) if losses else 0}
    if not is_main():  # under several processes the main one writes the stage's files and speaks
        return FinetuneRun({}, problems, m)
    result = out.finish(ledger, counts, problems, base=base, quant=m["quant"],
                        peak_memory_gib=m["peak_memory_gib"], useful_tokens_per_s=m["useful_tokens_per_s"])
    return FinetuneRun(result.manifest, result.problems, m)

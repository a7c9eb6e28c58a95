"""Sharing: curated records in the formats other tools read (Dolly, Alpaca, ShareGPT), with a dataset card, and a
model card for adapters. Licences travel in `meta.license` from import to here; a non-commercial one is called out.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import HubUnavailableError, InputError
from workbench.core.io import atomic_write_text
from workbench.core.records import Record

FORMATS = ("dolly", "alpaca", "sharegpt")


def to_rows(records: list[Record], fmt: str) -> list[dict[str, Any]]:
    if fmt == "dolly":  # databricks-dolly-15k's fields
        return [{"instruction": r.instruction, "context": r.context, "response": r.response,
                 "category": r.category or ""} for r in records]
    if fmt == "alpaca":  # Stanford Alpaca's fields
        return [{"instruction": r.instruction, "input": r.context, "output": r.response} for r in records]
    if fmt == "sharegpt":  # one human turn (instruction, then the context) and the answer
        return [{"id": r.id, "conversations": [
            {"from": "human", "value": r.instruction + (f"\n\n{r.context}" if r.context.strip() else "")},
            {"from": "gpt", "value": r.response}]} for r in records]
    raise InputError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")


def write_export(records: list[Record], fmt: str, out: str | Path) -> Path:
    """Alpaca is one JSON array (as released); Dolly and ShareGPT are JSON lines."""
    rows = to_rows(records, fmt)
    text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n" if fmt == "alpaca" else \
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(out, text)
    return Path(out)


@dataclass
class Exported:
    records: int
    card: Path
    non_commercial: list[str]  # licences mixed in that forbid commercial use
    problems: list


def export_file(source: Path, fmt: str, output: Path, run: Path | None = None) -> Exported:
    """`workbench data export`: SOURCE's records as FMT in OUTPUT, its dataset card beside it (NAME.README.md),
    with the stage counts and rejection reasons of the run that made them when RUN is given."""
    from workbench.core.io import load_records, refuse_overwrite
    from workbench.core.runs import stage_summaries

    card = output.with_name(output.name.removesuffix(output.suffix) + ".README.md")
    for written in (output, card):
        refuse_overwrite(written, [source], "this export")
    problems: list = []
    records = load_records(source, problems)
    write_export(records, fmt, output)
    atomic_write_text(card, dataset_card(records, fmt, output.name, stage_summaries(run) if run else None))
    licenses = {str(r.meta.get("license")) for r in records if r.meta.get("license")}
    return Exported(len(records), card, non_commercial(licenses), problems)


def non_commercial(licenses: Iterable[str]) -> list[str]:
    """The licences that forbid commercial use (Creative Commons NC variants, or saying so)."""
    return sorted({name for name in licenses if re.search(r"\bNC\b", name) or "non-commercial" in name.lower()
                   or "noncommercial" in name.lower()})


def dataset_card(records: list[Record], fmt: str, data_file: str, run_stages: list[dict] | None = None) -> str:
    """A dataset card: what is in the file, where it came from, under which licences, what the stages removed."""
    sources = Counter(r.source or "unknown" for r in records)
    licenses = Counter(str(r.meta.get("license") or "not stated (made by this workbench)") for r in records)
    categories = Counter(r.category or "none" for r in records)
    edited = sum(any(e.get("action") == "edit" for e in r.lineage) for r in records)
    lines = ["---", "task_categories:", "- text-generation", "language:", "- en", "tags:", "- instruction-tuning",
             "- instruct-workbench", "---", "", "# Instruction-tuning data made with Instruct Workbench", "",
             f"`{data_file}`: {len(records):,} records in {fmt} format. {edited:,} were corrected by reviewers.", ""]
    blocked = non_commercial(licenses)
    if blocked:
        lines += [f"> **Non-commercial licence mixed in**: {', '.join(blocked)} — the whole set may only be used "
                  "non-commercially unless those records are removed.", ""]
    for title, counts in (("Sources", sources), ("Licences", licenses), ("Categories", categories)):
        lines += [f"## {title}", "", "| | records |", "| --- | --- |"]
        lines += [f"| {name} | {n:,} |" for name, n in counts.most_common()] + [""]
    if run_stages:
        lines += ["## How it was made", "", "| stage | counts | removed or changed |", "| --- | --- | --- |"]
        for s in run_stages:
            counts = ", ".join(f"{k} {v:,}" for k, v in s["counts"].items())
            reasons = "; ".join(f"{n:,} {reason}" for reason, n in sorted(s["ledger"].items(), key=lambda kv: -kv[1]))
            lines.append(f"| {s['stage']} | {counts} | {reasons or '–'} |")
        lines.append("")
    return "\n".join(lines)


def push_to_hub(repo: str, files: dict[str, Path], token: str | None = None) -> str:
    """Upload `files` (name in the repo -> local path) to a dataset repo; a clear error where no hub is reachable."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise HubUnavailableError(f"cannot push to {repo}: HF_HUB_OFFLINE=1 (no model or dataset hub here)",
                                  hint="the exported file and its card are written; upload them where the hub is "
                                       "reachable (huggingface-cli upload)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        for name, path in files.items():
            api.upload_file(path_or_fileobj=str(path), path_in_repo=name, repo_id=repo, repo_type="dataset")
    except Exception as e:  # noqa: BLE001 - connection, auth and HTTP errors all mean the same to the user here
        raise HubUnavailableError(f"cannot push to {repo}: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                                  hint="check the network and `huggingface-cli login`") from None
    return f"https://huggingface.co/datasets/{repo}"


def model_card(manifest: dict[str, Any]) -> str:
    """The adapter's README.md: base, data, settings, losses (peft's template has none of these)."""
    config = manifest["config"]
    losses = manifest.get("train_loss") or []
    first, last = (losses[0]["loss"], losses[-1]["loss"]) if losses else (None, None)
    return "\n".join([
        "---", f"base_model: {manifest['base_model']}", "library_name: peft", "pipeline_tag: text-generation",
        "tags:", "- lora", "- instruct-workbench", "---", "",
        f"# LoRA adapter for {manifest['base_model']}", "",
        "Trained with Instruct Workbench (`workbench finetune`). Load it with "
        f"`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('{manifest['base_model']}'), ADAPTER)` or "
        "`workbench ask --model BASE --adapter ADAPTER`.", "",
        "| | |", "| --- | --- |",
        f"| training data | {manifest.get('data') or 'not named'} (sha256 {str(manifest.get('data_sha256'))[:16]}…) |",
        f"| examples | {manifest['train_examples']:,} train, {manifest['eval_examples']:,} held out |",
        f"| base precision | {manifest['quant']} ({manifest.get('quantized_layers', 0)} quantized layers) |",
        f"| LoRA | rank {config['rank']}, alpha {config['alpha']}, dropout {config['dropout']}, "
        f"targets {', '.join(manifest.get('lora_targets', []))} |",
        f"| training | {manifest['steps']} steps, {manifest['epochs']:.2f} epochs, lr {config['lr']}, "
        f"packing {'on' if config['packing'] else 'off'}, system prompt {'on' if config['system_prompt'] else 'off'} |",
        f"| loss | train {first} → {last}; final eval {manifest.get('final_eval_loss')} |",
        *([f"| method | DPO (trl), beta {config.get('beta')}, reference "
           f"{manifest.get('ref_adapter') or 'the base'}; examples are preference pairs |"]
          if manifest.get("method") == "dpo" else []), "",
        "Prompt format: Dolly-style sections (`### Instruction:`, `### Context:`, `### Response:`) or the tokenizer's "
        "chat template when it has one; see `manifest.json` for everything, and `loss.png`.", ""])

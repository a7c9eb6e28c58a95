"""The loop's own stages as top-level commands: dedup, contamination, screen, finetune, merge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench import api, display
from workbench.cli.base import AllowEmpty, Rejected, Strict, opt, quarantined, required, shown, sibling, warn
from workbench.core.distributed import is_main
from workbench.core.scorers import scorer_names
from workbench.core.urls import masked
from workbench.display import console, progress_bar

D, S, F = api.DEDUP, api.SCREEN, api.FINETUNE


def dedup_command(
    records: Annotated[list[Path] | None, typer.Argument(help="Records to deduplicate, as one set (JSONL or "
                                                             "Parquet).")] = None,
    output: Annotated[Path | None, opt("Kept records.", "-o", "--output")] = None,
    clusters: Annotated[Path | None, opt("One line per removed record: id, duplicate_of, linked_to, similarity "
                                         "(default: beside -o).")] = None,
    rejected: Rejected = None,
    against: Annotated[list[Path] | None, opt("Also remove near-duplicates of these records (repeat the flag).")
                       ] = None,
    fields: Annotated[str, opt("Fields whose text is compared, comma-separated (instruction, context, "
                               "response).")] = ",".join(D.fields),
    threshold: Annotated[float, opt("Jaccard similarity of word n-grams at or above which records are "
                                    "duplicates.")] = D.threshold,
    ngram: int = D.ngram, num_perm: int = D.num_perm,
    keep: Annotated[str, opt("Which record of a cluster stays: first, longest or seed.")] = D.keep,
    workers: Annotated[int, opt("Processes that shingle and hash the texts.")] = D.workers,
    storage: Annotated[str, opt("memory, or redis: datasketch's LSH index in Redis.")] = D.storage,
    redis_url: Annotated[str, opt("Redis for --storage redis and the named indexes.")] = D.redis_url,
    index: Annotated[str | None, opt("A named index in Redis: also remove near-duplicates of the records in it, "
                                     "then add the kept ones (made on first use; runs at once take turns).")] = None,
    against_index: Annotated[list[str] | None, opt("Also remove near-duplicates of the records in this named "
                                                   "index, without adding to it (repeat the flag).")] = None,
    drop_index: Annotated[str | None, opt("Remove this named index from Redis (no records are read).")] = None,
    dry_run: Annotated[bool, opt("Only report what --thresholds would remove.")] = False,
    thresholds: Annotated[str, opt("With --dry-run.")] = "0.5,0.6,0.7,0.8,0.9", strict: Strict = False,
    allow_empty: AllowEmpty = False,
):
    """Remove near-duplicates (MinHash LSH candidates, verified by exact Jaccard), streaming over --workers.

    Example: workbench dedup candidates.jsonl -o unique.jsonl --clusters clusters.jsonl --against seeds.jsonl
    (a shared index: workbench dedup batch2.jsonl -o unique2.jsonl --index course-advisor)"""
    settings = dict(fields=fields, threshold=threshold, ngram=ngram, num_perm=num_perm, keep=keep, workers=workers,
                    storage=storage, redis_url=redis_url)
    api.dedup_config(**settings)  # every setting checked before anything else
    for flag, value in (("--index", index), ("--drop-index", drop_index),
                        *(("--against-index", name) for name in against_index or [])):
        if value is not None and not value.strip():  # `--index "$INDEX"` with the variable unset
            raise typer.BadParameter("is empty (an unset variable?): give the index's name", param_hint=flag)
    if drop_index:
        if records:
            raise typer.BadParameter("--drop-index reads no records: give it alone", param_hint="--drop-index")
        held = api.drop_dedup_index(drop_index, redis_url=redis_url)
        return console.print(f"Dropped dedup index {drop_index!r} ({held:,} records) from {masked(redis_url)}")
    if not records:
        raise typer.BadParameter("give the record files to deduplicate (or --drop-index NAME)", param_hint="RECORDS")
    if dry_run and (index or against_index):
        raise typer.BadParameter("--dry-run reads no index: leave out --index and --against-index",
                                 param_hint="--dry-run")
    if dry_run:
        return display.dedup_dry_run_table(*api.preview_dedup(records, thresholds=thresholds, against=against or [],
                                                              **settings))
    shown(api.dedup(records, required(output), against=against or [], index=index, against_index=against_index or [],
                    clusters=clusters, rejected=rejected, allow_empty=allow_empty, say=warn, **settings), strict)


def contamination_command(
    train: Annotated[Path, typer.Argument(help="Training records (instruction + response are compared).")],
    eval: Annotated[list[Path], opt("Eval items JSONL or suite folder (repeat the flag).", "--eval")],
    report: Annotated[Path | None, opt("The findings as JSON (default: TRAIN.contamination.json).")] = None,
    fail_on_contamination: Annotated[bool, opt("Exit 1 when any item is contaminated.")] = False,
    threshold: float = api.CONTAMINATION.threshold,
):
    """List eval items that are near-duplicates of training data or share a 13-gram with it.

    Example: workbench contamination curated.jsonl --eval closed_qa_items.jsonl --fail-on-contamination"""
    result = api.check_contamination(train, eval, report, threshold=threshold)
    display.contamination_summary(result)
    raise typer.Exit(1 if result.gate_error() and fail_on_contamination else 0)


def screen_command(
    records: Annotated[Path, typer.Argument(help="Records to screen.")],
    output: Annotated[Path | None, opt("pass and review records.", "-o", "--output")] = None,
    rejected: Rejected = None,
    scorer: Annotated[str, opt(f"A toxicity scorer: {', '.join(scorer_names())} (profanity-check runs offline, "
                               "the `profanity` extra).")] = S.scorer,
    model: Annotated[str, opt("detoxify model: original, unbiased or multilingual.")] = S.model,
    checkpoint: Annotated[str | None, opt("Local detoxify checkpoint.")] = S.checkpoint,
    hf_config: Annotated[str | None, opt("Folder with the checkpoint's config and tokenizer.")] = S.hf_config,
    pass_below: float = S.pass_below, reject_at: float = S.reject_at,
    label_threshold: Annotated[list[str] | None, opt("LABEL=PASS:REJECT (repeat the flag).")] = None,
    pii: Annotated[bool, opt("Send records with personal data to review.")] = S.pii,
    int8: Annotated[bool, opt("Dynamic int8 on the CPU (score change reported).")] = S.int8,
    dry_run: Annotated[bool, opt("Only count the routes and show the highest scores.")] = False,
    strict: Strict = False, allow_empty: AllowEmpty = False,
):
    """Score toxicity per field and route records to pass, review or reject (fails closed).

    Example: workbench screen unique.jsonl -o screened.jsonl --scorer profanity-check"""
    settings = dict(scorer=scorer, model=model, checkpoint=checkpoint, hf_config=hf_config, pass_below=pass_below,
                    reject_at=reject_at, label_threshold=label_threshold, pii=pii, int8=int8)
    api.screen_config(**settings)  # every setting checked before anything is read
    if dry_run:
        return display.screen_preview(*api.preview_screen(records, **settings))
    shown(api.screen(records, required(output), rejected=rejected, allow_empty=allow_empty, **settings), strict)


def finetune_command(
    base: Annotated[str, opt("Base model: hub id or folder.", "--base")],
    data: Annotated[Path, opt("Curated records (sft), or preference pairs with prompt, chosen, rejected (dpo); "
                              "JSONL or Parquet.", "--data")],
    output: Annotated[Path | None, opt("Adapter folder.", "-o", "--output")] = None,
    method: Annotated[str, opt("sft (records) or dpo (preference pairs, trl's DPOTrainer).")] = F.method,
    ref_adapter: Annotated[Path | None, opt("dpo: an SFT adapter to start from and stay close to (default: the "
                                            "base).")] = None,
    beta: Annotated[float, opt("dpo: how far from the reference the model may move (trl's beta).")] = F.beta,
    quant: Annotated[str, opt("8bit, 4bit, none; default 8bit on CUDA, none on the CPU.")] = F.quant,
    epochs: float = F.epochs, lr: float = F.lr, rank: int = F.rank, alpha: int = F.alpha,
    dropout: Annotated[float, opt("LoRA dropout (0: the same update in any number of processes).")] = F.dropout,
    max_length: Annotated[int, opt("Longer examples are dropped and reported.")] = F.max_length,
    packing: Annotated[bool, opt("Several examples per row, kept apart (no padding).")] = F.packing,
    batch_size: int = F.batch_size, grad_accum: int = F.grad_accum, grad_checkpointing: bool = F.grad_checkpointing,
    save_steps: int = F.save_steps,
    kbit_fp32: Annotated[bool, opt("8/4-bit: the parameters that are not quantized in fp32 (peft's default; "
                                   "more memory).")] = F.kbit_fp32,
    eval_split: float = F.eval_split, max_steps: int = F.max_steps, seed: int = F.seed,
    system_prompt: Annotated[bool, opt("The course-advisor system prompt in every example.")] = F.system_prompt,
    eval_suite: Annotated[str | None, opt("An eval suite run at every checkpoint (its metrics with CIs in the "
                                          "manifest and beside the loss in loss.png).")] = F.eval_suite,
    eval_every: Annotated[int | None, opt("Steps between evaluated checkpoints (default: --save-steps).")] = \
        F.eval_every,
    eval_limit: Annotated[int | None, opt("Evaluate on the suite's first N items only.")] = F.eval_limit,
    keep_best: Annotated[str | None, opt("A suite metric: the checkpoint best by it becomes the adapter.")] = \
        F.keep_best,
    budget_gib: Annotated[float | None, opt("Memory to fit in GiB, above 0 (default: the GPU's): the rows of a "
                                            "step go through in passes that fit; refused if one row cannot.")] = None,
    resume: Annotated[bool, opt("Continue from the last checkpoint in -o.")] = False,
    processes: Annotated[int, typer.Option(help="Train in N processes (one per GPU; gloo on the CPU) through "
                                           "accelerate launch; the effective batch is N times larger.", min=1)] = 1,
    accelerate_config: Annotated[Path | None, opt("Launch through accelerate with this config file (FSDP, "
                                                  "DeepSpeed, several machines; its process count unless "
                                                  "--processes).")] = None,
    dry_run: Annotated[bool, opt("Show one tokenized example and check the data; no training.")] = False,
    strict: Strict = False,
):
    """Train a LoRA adapter on curated records (8-bit base on CUDA, loss on responses only, packing), or by DPO on
    preference pairs.

    Example: workbench finetune --base tiiuae/falcon-7b --data curated.jsonl -o adapters/advisor
    (DPO: workbench finetune --method dpo --base tiiuae/falcon-7b --data pairs.jsonl --ref-adapter adapters/advisor
    -o adapters/advisor-dpo)"""
    settings = dict(method=method, beta=beta, quant=quant, epochs=epochs, lr=lr, rank=rank, alpha=alpha,
                    dropout=dropout, max_length=max_length, packing=packing, batch_size=batch_size,
                    grad_accum=grad_accum, grad_checkpointing=grad_checkpointing, kbit_fp32=kbit_fp32,
                    save_steps=save_steps, eval_split=eval_split, max_steps=max_steps, seed=seed,
                    system_prompt=system_prompt, eval_suite=eval_suite, eval_every=eval_every, eval_limit=eval_limit,
                    keep_best=keep_best)
    config = api.finetune_config(**settings)
    if method == "sft" and beta != F.beta:
        raise typer.BadParameter("is DPO's (--method dpo); SFT has no reference to stay close to", param_hint="--beta")
    if dry_run:
        dry, problems = api.preview_finetune(base, data, **settings)
        (display.dpo_dry_run_report if method == "dpo" else display.dry_run_report)(dry, config)
        return quarantined(problems, sibling(data, ".quarantine.jsonl"), strict)
    run = dict(resume=resume, budget_gib=budget_gib, ref_adapter=ref_adapter, **settings)
    if not is_main():  # under `accelerate launch -m workbench finetune`: this process trains its share
        api.finetune(base, data, required(output), **run)
        return
    output = required(output)
    with progress_bar("Finetuning") as update:
        result = api.finetune(base, data, output, processes=processes, accelerate_config=accelerate_config,
                              progress=update, say=lambda line: console.print(line, markup=False, highlight=False),
                              **run)
    shown(result, strict)


def merge_command(adapter: Annotated[Path, typer.Argument(help="Adapter folder (from `workbench finetune`).")],
                  output: Annotated[Path, opt("Merged model folder.", "-o", "--output")],
                  dtype: Annotated[str, opt("bfloat16, float16 or float32 (never 8-bit).")] = "bfloat16",
                  base: Annotated[str | None, opt("Base model (default: the one the adapter names).")] = None):
    """Merge an adapter into its base reloaded in 16-bit; checks the merged logits against base + adapter.

    Example: workbench merge adapters/advisor -o models/advisor-merged"""
    with console.status("Merging..."):
        made = api.merge(adapter, output, dtype=dtype, base=base)
    console.print(f"Merged {adapter} into {made['base_model']} ({made['dtype']}) -> {output}; logits agree "
                  f"within {made['max_logit_difference']:.2g} on {made['prompts']} prompts")


def register(app) -> None:
    for name, command in (("dedup", dedup_command), ("contamination", contamination_command),
                          ("screen", screen_command), ("finetune", finetune_command), ("merge", merge_command)):
        app.command(name)(command)

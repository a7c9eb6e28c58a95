"""`workbench generate ...`: Self-Instruct instructions and instances, candidate responses, document questions,
and the instruction filters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench import api
from workbench.cli.base import (
    AllowEmpty,
    Force,
    ModelName,
    Output,
    Preset,
    Rejected,
    Rules,
    Seeds,
    Strict,
    group,
    opt,
    shown,
    warn,
)
from workbench.cli.options import ENDPOINT, SAMPLING, Endpoint, Sampling, grouped
from workbench.display import progress_bar

generate_app = group("Self-Instruct generation: instructions, instances, document questions, filters.")
GROUPS = {"generate": generate_app}


@generate_app.command("instructions")
@grouped
def generate_instructions(
    output: Output, model: ModelName, endpoint: Endpoint, seeds: Seeds = None,
    num: Annotated[int, opt("Stop after this many accepted instructions.")] = api.BOOTSTRAP.num,
    rounds: Annotated[int, opt("... or after this many rounds.")] = api.BOOTSTRAP.rounds,
    quota: Annotated[str | None, opt("Category shares that steer the seeds shown, e.g. "
                                     "brainstorming=0.2,closed_qa=0.3.")] = None,
    preset: Preset = "self-instruct", rules: Rules = None, rejected: Rejected = None, sampling: Sampling = SAMPLING,
    force: Force = False, allow_empty: AllowEmpty = False,
):
    """Bootstrap new instructions from the seed tasks (Self-Instruct); resumes after a kill.

    Example: workbench generate instructions --model tiiuae/falcon-7b-instruct --num 500 -o instructions.jsonl"""
    with progress_bar("accepted instructions") as step:
        shown(api.generate_instructions(output, model, seeds=seeds, num=num, rounds=rounds, quota=quota, preset=preset,
                                        rules=rules, rejected=rejected, force=force, allow_empty=allow_empty,
                                        progress=step, say=warn, **vars(endpoint), **vars(sampling)))


@generate_app.command("instances")
@grouped
def generate_instances(
    instructions: Annotated[Path, typer.Argument(help="Instruction records (e.g. from `generate instructions`).")],
    output: Output, model: ModelName, endpoint: Endpoint, seeds: Seeds = None,
    max_instances: Annotated[int, opt("Instances kept per task at most.")] = api.INSTANCES.max_instances,
    rejected: Rejected = None, sampling: Sampling = SAMPLING, force: Force = False, allow_empty: AllowEmpty = False,
):
    """Generate input/output instances for each instruction (output-first for classification tasks).

    Example: workbench generate instances instructions.jsonl --model tiiuae/falcon-7b-instruct -o instances.jsonl"""
    with progress_bar("instructions") as step:
        shown(api.generate_instances(instructions, output, model, seeds=seeds, max_instances=max_instances,
                                     rejected=rejected, force=force, allow_empty=allow_empty, progress=step, say=warn,
                                     **vars(endpoint), **vars(sampling)))


@generate_app.command("responses")
@grouped
def generate_responses(
    records: Annotated[Path, typer.Argument(help="Instructions to answer (records); their own responses, when "
                                                 "they have one, are candidates too.")],
    output: Output,
    model: Annotated[list[str], opt("Hub id or folder; repeat for several generators (slots rotate over them).",
                                    "--model")],
    adapter: Annotated[list[str] | None, opt("A LoRA adapter for the --model at the same place ('none': "
                                             "none); repeat as --model.", "--adapter")] = None,
    n: Annotated[int, opt("Candidates per instruction (at least 2), the original response counted.", "--n")] = \
        api.RESPONSES.n,
    keep_original: Annotated[bool, opt("An instruction's own response is candidate 0.")] = api.RESPONSES.keep_original,
    system_prompt: Annotated[bool, opt("The course-advisor system prompt before each instruction.")] = \
        api.RESPONSES.system_prompt,
    endpoint: Endpoint = ENDPOINT, sampling: Sampling = SAMPLING, rejected: Rejected = None, force: Force = False,
    allow_empty: AllowEmpty = False,
):
    """Write N candidate responses per instruction, to rank in review and to pair for DPO; resumes after a kill.

    Example: workbench generate responses curated.jsonl --model tiiuae/falcon-7b-instruct --n 4 -o candidates.jsonl"""
    if len(adapter or []) > len(model):
        raise typer.BadParameter(f"{len(adapter)} --adapter for {len(model)} --model", param_hint="--adapter")
    with progress_bar("instructions") as step:
        shown(api.generate_responses(records, output, model, adapter=adapter, n=n, keep_original=keep_original,
                                     system_prompt=system_prompt, rejected=rejected, force=force,
                                     allow_empty=allow_empty, progress=step, say=warn, **vars(endpoint),
                                     **vars(sampling)))


@generate_app.command("from-docs")
@grouped
def generate_from_docs(
    output: Output, model: ModelName, docs: Annotated[Path, opt("Folder of Markdown, text or HTML documents.")],
    endpoint: Endpoint, num: Annotated[int, opt("Questions per document.")] = api.FROM_DOCS.num,
    grounding: Annotated[float, opt("Share of an answer's content words that must occur in the document.")] = \
        api.FROM_DOCS.grounding,
    rejected: Rejected = None, force: Force = False, allow_empty: AllowEmpty = False,
):
    """Ask questions a prospective student would ask of each document, and answer them from it (closed_qa).

    Example: workbench generate from-docs --docs catalog/ --model tiiuae/falcon-7b-instruct -o catalog-qa.jsonl"""
    with progress_bar("documents") as step:
        shown(api.generate_from_docs(output, model, docs, num=num, grounding=grounding, rejected=rejected, force=force,
                                     allow_empty=allow_empty, progress=step, say=warn, **vars(endpoint)))


@generate_app.command("filter")
def generate_filter(
    records: Annotated[Path, typer.Argument(help="Records whose `instruction` is judged, in file order.")],
    output: Annotated[Path, opt("Kept records (ids unchanged).", "-o", "--output")],
    pool: Annotated[Path | None, opt("Records whose instructions form the starting pool.")] = None,
    preset: Preset = "self-instruct", rules: Rules = None, rejected: Rejected = None, strict: Strict = False,
    allow_empty: AllowEmpty = False,
):
    """Apply the Self-Instruct filters (and ROUGE-L novelty against a pool) to existing records.

    Example: workbench generate filter candidates.jsonl --pool seeds.jsonl -o kept.jsonl --rejected rejected.jsonl"""
    shown(api.filter_instructions(records, output, pool=pool, preset=preset, rules=rules, rejected=rejected,
                                  allow_empty=allow_empty), strict)

"""Self-Instruct instance generation: input/output examples for each instruction.

Classification tasks are generated output-first (a class label, then an input for it) so that labels
do not all come out the same; other tasks input-first. Whether a task is classification comes from the
record (seed flag or bootstrap category) or, when unknown, from asking the model as the paper does.
The paper's instance filters follow (generate_instances.py / prepare_for_finetuning.py).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipelines.resumable import ResumableOutput
from workbench.core.backends import Backend, take_usage
from workbench.core.fingerprint import fingerprint
from workbench.core.io import Problem, load_records
from workbench.core.models import NOT_ANSWERED, GenerationParams
from workbench.core.prompts import (
    INSTANCE_INPUT_FIRST_TEMPLATE_ID,
    INSTANCE_OUTPUT_FIRST_TEMPLATE_ID,
    IS_CLASSIFICATION_TEMPLATE_ID,
    instance_prompt,
    is_classification_prompt,
)
from workbench.core.records import Record
from workbench.core.runs import Outputs, StepResult

Instance = tuple[str, str]  # (input, output)


class InstancesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_instances: int = Field(3, ge=1)  # instances kept per task at most
    examples: int = Field(4, ge=0)  # seed tasks shown as examples in each prompt
    ask_classification: bool = True  # ask the model when a record does not say whether it is classification
    # The paper: temperature 0, up to 300 tokens (350 for classification), stop at the next task.
    sampling: GenerationParams = GenerationParams(max_new_tokens=300, stop=("Task:", "\n\n\n"))
    seed: int = 0  # which seeds are shown, and which instances are kept when there are too many


def parse_input_output(text: str) -> Instance:
    """The paper's parse_input_output: text before "Output:" is the input, after it the output."""
    if re.findall(r"Output\s*\d*\s*:", text):
        parts = re.split(r"Output\s*\d*\s*:", text)
        given, output = parts[0].strip(), parts[1].strip()
    else:
        given, output = "", text.strip()
    if re.findall(r"Input\s*\d*\s*:", output):  # several pairs were generated: keep the first
        output = re.split(r"Input\s*\d*\s*:", output)[0].strip()
    given = re.sub(r"^Input\s*\d*\s*:", "", given).strip()
    return given, output


def parse_generation_instances(text: str, finish_reason: str) -> list[Instance]:
    """Instances of an input-first completion ("Example N" blocks, or one Input/Output pair)."""
    text = text.strip()
    if re.findall(r"Example\s?\d*\.?", text):
        instances = [parse_input_output(t.strip()) for t in re.split(r"Example\s?\d*\.?", text) if t.strip()]
    elif re.findall(r"Output\s*\d*\s*:", text):
        instances = [parse_input_output(text)]
    else:
        return []
    return instances[:-1] if finish_reason == "length" else instances


def parse_classification_instances(text: str, finish_reason: str) -> list[Instance]:
    """Instances of an output-first completion: each "Class label:" line, then its input."""
    if "Class label:" not in text:
        return []
    instances = []
    for block in text.split("Class label:")[1:]:
        label, _, given = block.strip().partition("\n")
        instances.append((re.sub(r"^Input\s*:", "", given.strip()).strip(), label.strip()))
    return instances[:-1] if finish_reason == "length" else instances


def filter_instances(instances: list[Instance]) -> tuple[list[Instance], Counter]:
    """The paper's filters: input equal to output, empty output, a field ending in ":" (unfinished), and any
    task whose same non-empty input got different outputs; exact repeats are merged."""
    reasons: Counter = Counter()
    valid = []
    for given, output in instances:
        if given == output:
            reasons["input equals output"] += 1
        elif not output:
            reasons["empty output"] += 1
        elif given.strip().endswith(":") or output.strip().endswith(":"):
            reasons["ends with ':' (unfinished)"] += 1
        else:
            valid.append((given, output))
    outputs: dict[str, str] = {}
    for given, output in valid:
        if given and outputs.setdefault(given, output) != output:
            reasons["same input, different outputs"] += len(valid)
            return [], reasons
    return list(dict.fromkeys(valid)), reasons


def _is_classification(backend: Backend, records: list[Record], seeds: list[Record], config: InstancesConfig,
                       rng: random.Random) -> list[tuple[bool, str]]:
    known = [(r.meta["is_classification"], "record") if isinstance(r.meta.get("is_classification"), bool)
             else None for r in records]
    unknown = [i for i, k in enumerate(known) if k is None]
    if unknown and config.ask_classification:
        flagged = [s for s in seeds if isinstance(s.meta.get("is_classification"), bool)]
        prompts = [is_classification_prompt(records[i].instruction, rng.sample(flagged, min(8, len(flagged))))
                   for i in unknown]
        answers = backend.generate(prompts, GenerationParams(max_new_tokens=3, stop=("\n",)))
        for i, answer in zip(unknown, answers):
            known[i] = (answer.strip().lower().startswith("yes"), "model")
    return [k or (False, "default") for k in known]


def run(backend: Backend, instructions: Path, seeds: Path, config: InstancesConfig, out: Outputs,
        force: bool = False, progress: Callable[[int, int], None] | None = None) -> StepResult:
    """The instances stage: one record per kept instance (instruction, context = input, response = output) into
    out["records.jsonl"]; instructions without a valid instance are dropped with why. Resumes after a kill."""
    ledger = out.start(config, [instructions, seeds])
    problems: list[Problem] = []
    tasks, seed_records = load_records(instructions, problems), load_records(seeds, problems)
    key = fingerprint(config=config, instructions=Path(instructions), seeds=Path(seeds), backend=backend.backend,
                      model=backend.name)
    output = ResumableOutput(out, key, ledger, force)
    rng = random.Random(config.seed)
    usage = Counter(output.state.get("usage", {}))
    start, batch = output.state.get("next", 0), config.sampling.batch_size
    for begin in range(start, len(tasks), batch):
        rng.seed(config.seed * 1_000_003 + begin)  # per batch, so a resumed run draws the same examples
        chunk = tasks[begin:begin + batch]
        kinds = _is_classification(backend, chunk, seed_records, config, rng)
        prompts = []
        for record, (clf, _) in zip(chunk, kinds):
            shots = [s for s in seed_records if bool(s.meta.get("is_classification")) == clf] or seed_records
            prompts.append(instance_prompt(record.instruction, rng.sample(shots, min(config.examples, len(shots))),
                                           output_first=clf))
        completions = backend.complete(prompts, config.sampling)
        kept = []
        for record, (clf, how), completion in zip(chunk, kinds, completions):
            if completion.error:  # this prompt alone failed (too long for the model, refused): the rest go on
                ledger.drop(record, NOT_ANSWERED, {"error": completion.error, "model": backend.name})
                continue
            parse = parse_classification_instances if clf else parse_generation_instances
            instances, reasons = filter_instances(parse(completion.text, completion.finish_reason))
            if len(instances) > config.max_instances:
                instances = rng.sample(instances, config.max_instances)
            detail = {"backend": backend.backend, "model": backend.name, "parent": record.id,
                      "template": INSTANCE_OUTPUT_FIRST_TEMPLATE_ID if clf else INSTANCE_INPUT_FIRST_TEMPLATE_ID,
                      "classification": clf, "classification_from": how,
                      "classification_template": IS_CLASSIFICATION_TEMPLATE_ID,
                      "params": config.sampling.model_dump(mode="json"), "filtered": dict(reasons)}
            for given, answer in instances:
                made = Record(record.instruction, given, answer, record.category, record.source,
                              lineage=[*record.lineage, {"stage": "instances", "action": "create",
                                                         "reason": None, "detail": detail, "run": None}],
                              meta={**record.meta, "is_classification": clf})
                if completion.controls_removed:
                    made = ledger.edit(made, "control characters removed", {"count": completion.controls_removed})
                kept.append(made)
            if not instances:
                reason = "no valid instance" if not reasons else f"no valid instance ({', '.join(sorted(reasons))})"
                ledger.drop(record, reason, detail)
        output.append(kept, next=begin + len(chunk), usage=take_usage(usage, backend))
        if progress:
            progress(begin + len(chunk), len(tasks))
    return output.finish(usage, problems, resumed=output.resumed)

"""Candidate responses to compare: K per instruction, from one or more generators (a model, with or without a
LoRA adapter, at a sampling setting), for people to rank in review and for preference pairs (DPO) after.

Each candidate is a record of its own (the instruction and context of its parent, the candidate as response),
carrying `meta.compare_group` (the parent's id), `meta.candidate` (its slot, 0..K-1) and `meta.generator`
(who wrote it: "original", MODEL or MODEL+ADAPTER), and a lineage event naming the generator and its sampling
settings. An instruction's own response, when it has one and `keep_original` is on, is candidate 0. Slots rotate
over the generators; each slot samples with its own seed, so one sampling generator still gives K different
answers. A candidate whose text (normalised) equals an earlier one of its group, or is empty, is dropped with
why; a group left with fewer than two candidates is dropped whole (nothing to compare). Resumes after a kill
like the other generation stages (pipelines.resumable).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipelines.resumable import ResumableOutput
from workbench.core.backends import Backend, take_usage
from workbench.core.fingerprint import fingerprint
from workbench.core.io import Problem, load_records
from workbench.core.models import NOT_ANSWERED, GenerationParams
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, ANSWER_STOPS, build_prompt
from workbench.core.records import Record, normalise


class ResponsesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(2, ge=2)  # candidates per instruction, the original response counted when kept
    keep_original: bool = True  # an instruction's own response (a person's, or a model's) is candidate 0
    system_prompt: bool = False  # the course-advisor system prompt before each instruction
    # Sampling by default: with one generator, greedy decoding would write the same answer K times.
    sampling: GenerationParams = GenerationParams(max_new_tokens=256, temperature=0.7, top_p=0.9,
                                                  stop=ANSWER_STOPS)
    seed: int = 0  # slot i samples with seed + 1000 * i


def generator_label(backend: Backend) -> str:
    adapter = getattr(backend, "adapter", None)
    return f"{backend.name}+{adapter}" if adapter else backend.name


def _prompt(backend: Backend, record: Record, config: ResponsesConfig) -> str:
    # The prompt finetuning and evaluation build, so a candidate answers what a trained model will be asked.
    return build_prompt(record.instruction, record.context, ADVISOR_SYSTEM_PROMPT if config.system_prompt else None,
                        getattr(backend, "tokenizer", None))


def run(generators: Sequence[Backend], records_path: Path, config: ResponsesConfig, out, force: bool = False,
        progress: Callable[[int, int], None] | None = None):
    """The responses stage: config.n candidate records per instruction of RECORDS into out["records.jsonl"];
    candidates and instructions that give nothing to compare are dropped with why. Resumes after a kill."""
    if not generators:
        raise ValueError("generate responses needs at least one generator")
    ledger = out.start(config, [records_path])
    problems: list[Problem] = []
    records = load_records(records_path, problems)
    key = fingerprint(config=config, records=Path(records_path),
                      generators=[[g.backend, generator_label(g)] for g in generators])
    output = ResumableOutput(out, key, ledger, force)
    usage = Counter(output.state.get("usage", {}))
    start, batch = output.state.get("next", 0), config.sampling.batch_size
    for begin in range(start, len(records), batch):
        chunk = records[begin:begin + batch]
        # Per record: (slot, generator label, text, detail) for every candidate, the original first.
        candidates: dict[int, list[tuple[int, str, str, dict]]] = {i: [] for i in range(len(chunk))}
        first = 0
        if config.keep_original:
            for i, record in enumerate(chunk):
                if record.response.strip():
                    candidates[i].append((0, "original", record.response, {"generator": "original"}))
            first = 1
        for slot in range(config.n):
            # With originals, the first generator writes slot 1 (and slot 0 of a record that has no response).
            generator = generators[max(slot - first, 0) % len(generators)]
            params = config.sampling.override(seed=config.seed + 1000 * slot)
            wanted = [i for i in range(len(chunk)) if len(candidates[i]) == slot]
            if not wanted:
                continue
            completions = generator.complete([_prompt(generator, chunk[i], config) for i in wanted], params)
            for i, completion in zip(wanted, completions):
                detail = {"generator": generator_label(generator), "backend": generator.backend,
                          "model": generator.name, "adapter": getattr(generator, "adapter", None),
                          "params": params.model_dump(mode="json"), "finish_reason": completion.finish_reason,
                          **({"error": completion.error} if completion.error else {}),
                          **({"controls_removed": completion.controls_removed}
                             if completion.controls_removed else {})}
                candidates[i].append((len(candidates[i]), detail["generator"], completion.text.strip(), detail))
        kept: list[Record] = []
        for i, record in enumerate(chunk):
            group, seen = [], {}
            for slot, label, text, detail in candidates[i]:
                candidate = Record(record.instruction, record.context, text, record.category,
                                   record.source if label == "original" else "generated",
                                   lineage=[*record.lineage, {"stage": "responses", "action": "create",
                                                              "reason": None, "run": None,
                                                              "detail": {**detail, "parent": record.id,
                                                                         "candidate": slot, "of": config.n}}],
                                   meta={**record.meta, "compare_group": record.id, "candidate": slot,
                                         "generator": label})
                same = seen.get(normalise(text).casefold())
                if detail.get("controls_removed"):
                    candidate = ledger.edit(candidate, "control characters removed",
                                            {"count": detail["controls_removed"]})
                if detail.get("error"):
                    ledger.drop(candidate, NOT_ANSWERED, {"generator": label, "candidate": slot,
                                                          "error": detail["error"]})
                elif not text.strip():
                    ledger.drop(candidate, "empty response", {"generator": label, "candidate": slot})
                elif same is not None:
                    ledger.drop(candidate, "same response as an earlier candidate",
                                {"generator": label, "candidate": slot, "same_as": same})
                else:
                    seen[normalise(text).casefold()] = slot
                    group.append(candidate)
            if len(group) < 2:
                ledger.drop(record, "fewer than 2 different responses", {"candidates": len(group), "of": config.n})
            else:
                kept.extend(group)
        output.append(kept, next=begin + len(chunk), usage=take_usage(usage, *generators))
        if progress:
            progress(begin + len(chunk), len(records))
    return output.finish(usage, problems, resumed=output.resumed, generators=[generator_label(g) for g in generators])

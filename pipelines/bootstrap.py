"""Self-Instruct bootstrapping: new instructions from a pool of seed and accepted machine instructions.

Each prompt shows k instructions (default 6 seeds + 2 machine ones, shuffled) numbered 1..k and ends
with "k+1."; the continuation is split on the numbering, filtered (pipelines.instruction_filter) in order
against the pool, and every accepted instruction joins the pool and gets a category. Rounds go on until
`num` instructions are accepted or `rounds` rounds have run. The run resumes after a kill.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.instruction_filter import FilterConfig, InstructionFilter, decision_text
from pipelines.resumable import ResumableOutput
from workbench.core.backends import Backend, take_usage
from workbench.core.errors import InputError
from workbench.core.fingerprint import config_data, fingerprint
from workbench.core.io import Problem, load_records
from workbench.core.models import NOT_ANSWERED, GenerationParams
from workbench.core.prompts import BOOTSTRAP_TEMPLATE_ID, CATEGORY_TEMPLATE_ID, bootstrap_prompt, category_prompt
from workbench.core.records import CATEGORIES, Record, did_you_mean
from workbench.core.runs import Outputs, StepResult

# The paper's request (bootstrap_instructions.py): temperature 0.7, top_p 0.5, up to 1024 new tokens, and
# stop before item 16 or at a blank line.
PAPER_SAMPLING = GenerationParams(temperature=0.7, top_p=0.5, max_new_tokens=1024,
                                  stop=("\n\n", "\n16", "16.", "16 ."))


class BootstrapConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    num: int = Field(100, ge=1)  # stop once this many instructions are accepted
    rounds: int = Field(20, ge=1)  # ... or after this many rounds
    prompts_per_round: int = Field(8, ge=1)  # prompts sent together each round
    seed_shown: int = Field(6, ge=1)  # seed instructions per prompt
    machine_shown: int = Field(2, ge=0)  # accepted machine instructions per prompt (once there are some)
    quota: dict[str, float] = Field(default_factory=dict)  # category -> share: steers which seeds are shown
    categorize: bool = True  # ask the model for each accepted instruction's category
    sampling: GenerationParams = PAPER_SAMPLING
    filter: FilterConfig = FilterConfig()
    seed: int = 0  # prompt sampling; sampling.seed + round seeds the model

    @field_validator("quota")
    @classmethod
    def _shares(cls, quota: dict[str, float]) -> dict[str, float]:
        for name, share in quota.items():
            if name not in CATEGORIES:
                raise ValueError(f"unknown category {name!r}{did_you_mean(name, CATEGORIES)}")
            if not 0 < share <= 1:
                raise ValueError(f"{name}: {share}: a share is a fraction of the instructions, above 0 and at most 1")
        if sum(quota.values()) > 1 + 1e-9:
            raise ValueError(f"the shares add up to {sum(quota.values()):.2f}: at most 1")
        return quota


def parse_quota(text: str | None) -> dict[str, float]:
    """'brainstorming=0.2,closed_qa=0.3' -> {category: share}; unknown categories are an error."""
    quota = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, share = part.partition("=")
        if name.strip() not in CATEGORIES:
            raise InputError(f"--quota: unknown category {name.strip()!r}{did_you_mean(name.strip(), CATEGORIES)}")
        try:
            quota[name.strip()] = float(share)
        except ValueError:
            raise InputError(f"--quota: {part!r} is not CATEGORY=SHARE") from None
        if not 0 < quota[name.strip()] <= 1:  # nan fails this too
            raise InputError(f"--quota: {part.strip()!r}: a share is a fraction of the instructions, above 0 and at "
                             "most 1")
    if sum(quota.values()) > 1 + 1e-9:
        raise InputError(f"--quota: the shares add up to {sum(quota.values()):.2f}, more than all the instructions",
                         hint="shares are fractions that add up to at most 1 (e.g. brainstorming=0.2,closed_qa=0.3)")
    return quota


def parse_instructions(completion: str, finish_reason: str, truncated: str) -> tuple[list[str], list[str]]:
    """(instructions, lost to truncation) from a continuation of "k+1.".

    The paper's code splits on newline-number-period and drops a completion cut off by the token limit
    whole ("drop-all"); Alpaca's drops only its last, probably unfinished, item ("drop-last").
    """
    items = [" ".join(piece.split()) for piece in re.split(r"\n\d+\s?\. ", completion)]
    items = [item for item in items if item]
    if finish_reason != "length" or not items:
        return items, []
    if truncated == "drop-all":
        return [], items
    return items[:-1], items[-1:]


def parse_category(answer: str) -> str | None:
    """The first of the eight category names in a model's answer, spelled loosely."""
    text = answer.strip().lower().replace("-", "_").replace(" ", "_")
    found = [(text.find(c), c) for c in CATEGORIES if c in text]
    return min(found)[1] if found else None


def _seeds_to_show(rng: random.Random, seeds: list[Record], config: BootstrapConfig) -> tuple[list[Record], bool]:
    """Seeds for one prompt; a quota picks a category and its seeds go first. Returns (seeds, classification)."""
    count = min(config.seed_shown, len(seeds))
    if not config.quota:
        return rng.sample(seeds, count), False
    names = sorted(config.quota)
    target = rng.choices(names, weights=[config.quota[n] for n in names])[0]
    matching = [s for s in seeds if s.category == target]
    chosen = rng.sample(matching, min(count, len(matching)))
    rest = [s for s in seeds if s not in chosen]
    chosen += rng.sample(rest, count - len(chosen))
    return chosen, target == "classification"


def _build_prompts(rng: random.Random, seeds: list[Record], machine: list[str], config: BootstrapConfig):
    prompts = []
    for _ in range(config.prompts_per_round):
        shown_seeds, classification = _seeds_to_show(rng, seeds, config)
        shown_machine = rng.sample(machine, min(config.machine_shown, len(machine)))
        shown = [s.instruction for s in shown_seeds] + shown_machine
        rng.shuffle(shown)
        prompts.append((bootstrap_prompt(shown, classification), shown_seeds))
    return prompts


def _categorize(backend: Backend, texts: list[str], shown: list[list[Record]], seeds: list[Record],
                config: BootstrapConfig, rng: random.Random) -> list[tuple[str, str]]:
    """(category, method) per instruction: asked of the model, else the majority of the seeds shown."""
    answers: list[str | None] = [None] * len(texts)
    if config.categorize and texts:
        shots = [rng.sample(seeds, min(8, len(seeds))) for _ in texts]
        params = GenerationParams(max_new_tokens=8, stop=("\n",), batch_size=config.sampling.batch_size)
        answers = backend.generate([category_prompt(t, s) for t, s in zip(texts, shots)], params)
    result = []
    for answer, shown_seeds in zip(answers, shown):
        category = parse_category(answer) if answer is not None else None
        if category:
            result.append((category, "model"))
        else:
            majority = Counter(s.category for s in shown_seeds if s.category).most_common(1)
            result.append((majority[0][0] if majority else "open_qa", "majority-of-shown-seeds"))
    return result


def run(backend: Backend, seeds: Path, config: BootstrapConfig, out: Outputs, force: bool = False,
        progress: Callable[[int, int], None] | None = None) -> StepResult:
    """The instructions stage: new instructions from the seed tasks in SEEDS into out["records.jsonl"]; every
    dropped candidate (with why) in out["dropped.jsonl"]. Resumes after a kill."""
    ledger = out.start(config, [seeds])
    problems: list[Problem] = []
    seed_records = load_records(seeds, problems)
    if not seed_records:
        raise InputError(f"{seeds}: no valid seed task to start from")
    # num and rounds only say when to stop: a finished run can be continued with larger ones.
    key = fingerprint(config=config_data(config, {"num", "rounds"}), seeds=Path(seeds), backend=backend.backend,
                      model=backend.name)
    output = ResumableOutput(out, key, ledger, force)
    machine = [r.instruction for r in output.read()]
    judge = InstructionFilter.create(config.filter, [s.instruction for s in seed_records])
    if judge.pool is not None:
        for text in machine:  # the pool as the paper's loop had it: accepted ones in their judged form
            judge.pool.add(decision_text(text))
    rng = random.Random(config.seed)
    if "rng" in output.state:
        rng.setstate(_rng_state(output.state["rng"]))
    usage = Counter(output.state.get("usage", {}))
    round_ = output.state.get("round", 0)
    while round_ < config.rounds and len(machine) < config.num:
        prompts = _build_prompts(rng, seed_records, machine, config)
        params = config.sampling.model_copy(update={"seed": config.sampling.seed + round_})
        completions = backend.complete([p for p, _ in prompts], params)
        kept, kept_shown = [], []
        for number, ((_, shown_seeds), completion) in enumerate(zip(prompts, completions), start=1):
            if completion.error:  # this prompt alone failed: its place in the ledger says why, the round goes on
                ledger.drop(_record(f"(prompt {number} of round {round_ + 1}: not answered)", backend, params,
                                    round_), NOT_ANSWERED, {"error": completion.error})
                continue
            items, lost = parse_instructions(completion.text, completion.finish_reason, config.filter.truncated)
            for text in lost:
                ledger.drop(_record(text, backend, params, round_), "in a completion cut off at the token limit",
                            {"rule": "truncated"})
            for text in items:
                if len(machine) + len(kept) >= config.num:
                    break  # enough: the rest of this completion is not judged
                verdict = judge.judge(text)
                record = _record(text, backend, params, round_)
                if verdict.kept:
                    kept.append(ledger.keep(record, verdict.as_detail()))
                    kept_shown.append(shown_seeds)
                else:
                    ledger.drop(record, verdict.reason or "", verdict.as_detail())
        for record, (category, method) in zip(kept, _categorize(
                backend, [r.instruction for r in kept], kept_shown, seed_records, config, rng)):
            record.category = category
            record.meta["is_classification"] = category == "classification"
            record.lineage[0]["detail"]["category_method"] = method
        machine += [r.instruction for r in kept]
        round_ += 1
        output.append(kept, round=round_, rng=list(rng.getstate()[1]), usage=take_usage(usage, backend))
        if progress:
            progress(len(machine), config.num)
    return output.finish(usage, problems, rounds=round_, resumed=output.resumed)


def _record(text: str, backend: Backend, params: GenerationParams, round_: int) -> Record:
    detail = {"backend": backend.backend, "model": backend.name, "template": BOOTSTRAP_TEMPLATE_ID,
              "category_template": CATEGORY_TEMPLATE_ID, "params": params.model_dump(mode="json"),
              "round": round_}
    return Record(instruction=text, source="generated",
                  meta={"model": backend.name, "backend": backend.backend, "round": round_},
                  lineage=[{"stage": "generate", "action": "create", "reason": None, "detail": detail,
                            "run": None}])


def _rng_state(numbers: list[int]) -> tuple:
    # random.Random's state is (version, tuple of 625 ints, gauss_next); version 3, no cached gauss.
    return (3, tuple(numbers), None)


"""ROUGE-L novelty filter: our indexed filter vs the exhaustive loop of the Self-Instruct code.

A seeded synthetic corpus (templated instructions over a random Zipf vocabulary, about a third planted
near-duplicates of earlier ones) is filtered in order against a growing pool. The exhaustive loop scores
every pair with rouge-score (as bootstrap_instructions.py does); ours must make identical decisions.

    .venv/bin/python bench/rouge_filter.py [--candidates 50000] [--sample 1500] [--seed 0]

Prints decisions-equal, the speed-up on the sample (both measured in this run), and the full-size time.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.instruction_filter import SELF_INSTRUCT_KEYWORDS, InstructionFilter, filter_config  # noqa: E402

TEMPLATES = [
    "Write a short {a} about {n} and {n} for a {n} audience.",
    "Explain how {n} can {v} the {n} of a {n}.",
    "List {k} ways to {v} {n} without {n}.",
    "Classify the following {n} as {a} or {a}.",
    "Summarize the main {n} of the {n} in {k} sentences.",
    "What is the difference between {n} and {n} in {n}?",
    "Give me {k} {a} ideas to {v} a {n} on a {n}.",
    "Rewrite the {n} so that it sounds more {a} and {a}.",
    "Suggest a {a} name for a {n} that sells {n}.",
    "Describe a typical day of a {n} who works with {n}.",
    "Compare {n} and {n} in terms of {n}, {n} and {n}.",
    "Tell me whether a {n} should {v} before the {n} or after the {n}.",
]


def synthetic_instructions(count: int, seed: int = 0, vocabulary: int = 8000, near_share: float = 1 / 3):
    rng = random.Random(seed)
    letters = string.ascii_lowercase
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(vocabulary)]
    weights = [1 / (i + 1) ** 1.1 for i in range(vocabulary)]  # Zipf-like word use

    def word():
        return rng.choices(words, weights)[0]

    made: list[str] = []
    for _ in range(count):
        if made and rng.random() < near_share:
            tokens = rng.choice(made).split()
            for _ in range(rng.randint(1, 3)):  # a few edits: replace, insert or delete a word
                i = rng.randrange(len(tokens))
                action = rng.random()
                if action < 0.5:
                    tokens[i] = word()
                elif action < 0.8:
                    tokens.insert(i, word())
                elif len(tokens) > 4:
                    del tokens[i]
            made.append(" ".join(tokens))
        else:
            template = rng.choice(TEMPLATES)
            made.append(re.sub(r"\{(\w)\}", lambda m: str(rng.randint(2, 9)) if m.group(1) == "k" else word(),
                               template))
    return made


def exhaustive(candidates: list[str], pool: list[str], threshold: float = 0.7) -> list[tuple]:
    """The Self-Instruct code's decisions, pair by pair (bootstrap_instructions.py)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = list(pool)
    decisions = []
    for raw in candidates:
        inst = re.sub(r"\s+", " ", raw).strip().capitalize()
        if not inst:
            decisions.append(("words",))
            continue
        n = len(inst.split())
        if n <= 3 or n > 150:
            decisions.append(("words",))
            continue
        # As the paper writes it (find_word_in_string), unescaped.
        if any(re.compile(r"\b({0})\b".format(w), flags=re.IGNORECASE).search(inst)  # noqa: UP030, UP032
               for w in SELF_INSTRUCT_KEYWORDS):
            decisions.append(("keyword",))
            continue
        if inst.startswith("Write a program"):
            decisions.append(("prefix",))
            continue
        if inst[0] in string.punctuation:
            decisions.append(("punctuation",))
            continue
        if not inst[0].isascii():
            decisions.append(("non-ascii",))
            continue
        scores = [scorer.score(inst, p)["rougeL"].fmeasure for p in pool]
        if scores and max(scores) > threshold:
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            decisions.append(("rouge", pool[best], round(scores[best], 6)))
            continue
        pool.append(inst)
        decisions.append(("keep",))
    return decisions


def ours(candidates: list[str], pool: list[str]) -> tuple[list[tuple], InstructionFilter]:
    judge = InstructionFilter.create(filter_config("self-instruct"), pool, candidates)
    decisions = []
    for text in candidates:
        verdict = judge.judge(text)
        if verdict.kept:
            decisions.append(("keep",))
        elif verdict.rule == "rouge":
            decisions.append(("rouge", verdict.similar_to, verdict.score))
        else:
            decisions.append((verdict.rule,))
    return decisions, judge


def exhaustive_pairs(decisions: list[tuple], pool_size: int) -> int:
    pairs = 0
    for decision in decisions:
        if decision[0] in ("keep", "rouge"):
            pairs += pool_size
        pool_size += decision[0] == "keep"
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    texts = synthetic_instructions(200 + args.candidates, args.seed)
    pool, candidates = texts[:200], texts[200:]

    sample = candidates[: args.sample]
    clock = time.perf_counter()
    reference = exhaustive(sample, pool)
    exhaustive_s = time.perf_counter() - clock
    clock = time.perf_counter()
    mine, _ = ours(sample, pool)
    ours_sample_s = time.perf_counter() - clock
    equal = mine == reference
    mismatches = sum(a != b for a, b in zip(mine, reference))

    clock = time.perf_counter()
    full, judge = ours(candidates, pool)
    ours_full_s = time.perf_counter() - clock
    kept = sum(d[0] == "keep" for d in full)
    # The exhaustive loop scores each candidate that reaches the ROUGE check against the whole pool then.
    pairs_exhaustive_full = exhaustive_pairs(full, len(pool))
    pairs_per_s = exhaustive_pairs(reference, len(pool)) / exhaustive_s
    figures = {
        "candidates": args.candidates, "sample": args.sample, "seed": args.seed,
        "decisions_equal_on_sample": equal, "mismatches": mismatches,
        "exhaustive_sample_s": round(exhaustive_s, 3), "ours_sample_s": round(ours_sample_s, 3),
        "speedup_on_sample": round(exhaustive_s / ours_sample_s, 1),
        "exhaustive_pairs_per_s": round(pairs_per_s),
        "ours_full_s": round(ours_full_s, 2), "kept": kept, "pool_at_end": len(judge.pool),
        "pairs_scored_full": judge.pool.pairs_scored, "pairs_exhaustive_full": pairs_exhaustive_full,
        "exhaustive_full_estimated_s": round(pairs_exhaustive_full / pairs_per_s),
        "speedup_full_estimated": round(pairs_exhaustive_full / pairs_per_s / ours_full_s, 1),
    }
    print(json.dumps(figures, indent=2))
    print(f"decisions equal on {args.sample} candidates: {equal}; speed-up {figures['speedup_on_sample']}x "
          f"(exhaustive {exhaustive_s:.1f} s vs ours {ours_sample_s:.2f} s, same run); "
          f"{args.candidates:,} candidates in {ours_full_s:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Pairwise LLM judge: for each item, which of two models' answers is better, asked in both orders.

Judges prefer whichever answer comes first (or second) more often than chance, so every pair is judged twice with
the answers swapped (Zheng et al. 2023, "Judging LLM-as-a-judge"). The later model wins an item only when it wins
in both orders, loses only when it loses in both, and ties otherwise; a verdict the judge did not give in the asked
form counts as a tie and is reported as unparsed. Verdicts are cached like generations (judge model files + prompt).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from eval_suites.runner import GenerationCache, model_fingerprint
from eval_suites.statistics import ModelResults
from workbench.core.backends import BackendConfig, load_backend
from workbench.core.fingerprint import fingerprint
from workbench.core.models import GenerationParams

JUDGE_TEMPLATE_ID = "workbench/pairwise-judge/v1"
JUDGE_PARAMS = GenerationParams(max_new_tokens=8, temperature=0.0, stop=("\n",), batch_size=8)


def judge_prompt(question: str, context: str, answer_a: str, answer_b: str) -> str:
    given = f"Context:\n{context.strip()}\n\n" if context.strip() else ""
    return ("You are a careful judge. Compare two answers to the same request. Prefer the answer that is correct, "
            "follows the request, and uses only what the context supports. Ignore length and style.\n\n"
            f"{given}Request:\n{question.strip()}\n\nAnswer A:\n{answer_a.strip()}\n\nAnswer B:\n{answer_b.strip()}"
            "\n\nWhich answer is better? Reply with exactly one of: A, B, tie.\nVerdict:")


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'tie' from the judge's first words; None when it gave none of them."""
    match = re.match(r"\W*(tie|a|b)\b", text.strip(), re.IGNORECASE)
    if not match:
        return None
    verdict = match.group(1).lower()
    return verdict if verdict == "tie" else verdict.upper()


def judge_cache(config: BackendConfig) -> GenerationCache:
    """The judge's verdicts by prompt (`fingerprint(prompt=...)`), keyed by its model files, template and params."""
    key = fingerprint(model=model_fingerprint(config), template=JUDGE_TEMPLATE_ID, params=JUDGE_PARAMS)
    return GenerationCache(f"judge-{key}")


def judge_both_orders(config: BackendConfig, cases: list[tuple[str, str, str, str]], api_key: str | None = None,
                      backend=None) -> tuple[list[tuple[str | None, str | None]], Any, str]:
    """The judge's verdicts on (question, context, answer x, answer y) cases, asked with x as A and then with y as
    A: [(forward, backward)], each 'A', 'B', 'tie' or None (unparsed); and the backend (loaded only when a verdict
    is not cached) and the cache file."""
    prompts = []
    for question, context, x, y in cases:
        prompts.append(judge_prompt(question, context, x, y))
        prompts.append(judge_prompt(question, context, y, x))
    cache = judge_cache(config)
    ids = [fingerprint(prompt=p) for p in prompts]
    todo = list({k: p for k, p in zip(ids, prompts) if k not in cache.answers}.items())
    if todo:
        backend = backend or load_backend(config, api_key)
        for start in range(0, len(todo), 32):
            chunk = todo[start:start + 32]
            outputs = backend.complete([p for _, p in chunk], JUDGE_PARAMS)
            cache.add([{"id": k, "prediction": o.text} for (k, _), o in zip(chunk, outputs)])
    verdicts = [parse_verdict(cache.answers[k]["prediction"]) for k in ids]
    return list(zip(verdicts[0::2], verdicts[1::2])), backend, str(cache.path)


def preferred(forward: str | None, backward: str | None) -> str | None:
    """'x' or 'y' when the judge prefers the same answer in both orders (forward: x is A), else None."""
    if forward == "A" and backward == "B":
        return "x"
    if forward == "B" and backward == "A":
        return "y"
    return None


def judge_pair(config: BackendConfig, first: ModelResults, other: ModelResults, suite: str,
               items: dict[str, dict[str, Any]], resamples: int = 1000, seed: int = 0,
               api_key: str | None = None, backend=None) -> tuple[dict[str, Any], Any]:
    """Win/tie/loss of `other` against `first` on the items both answered, with 95% bootstrap CIs."""
    a, b = first.suites[suite], other.suites[suite]
    common = [i for i in a.answers if i in b.answers]
    cases = []
    for i in common:
        item = items.get(i, {})
        question = item.get("question") or item.get("prompt") or a.questions.get(i, "")
        cases.append((question, item.get("context", ""), a.answers[i], b.answers[i]))  # other is B, then A
    both, backend, cache_path = judge_both_orders(config, cases, api_key, backend)
    unparsed = sum(v is None for pair in both for v in pair)
    # 1: other wins in both orders, 0: loses in both, 0.5: anything else
    outcome = [{"y": 1.0, "x": 0.0}.get(preferred(*pair), 0.5) for pair in both]
    scores = np.array(outcome)
    index = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores))) if len(scores) else None

    def rate(values: np.ndarray) -> dict[str, float | None]:
        if index is None:
            return {"mean": None, "ci_low": None, "ci_high": None}
        low, high = np.percentile(values[index].mean(axis=1), [2.5, 97.5])
        return {"mean": float(values.mean()), "ci_low": float(low), "ci_high": float(high)}

    result = {"win": rate((scores == 1.0).astype(float)), "tie": rate((scores == 0.5).astype(float)),
              "loss": rate((scores == 0.0).astype(float)), "unparsed": unparsed, "n": len(common),
              "cache": cache_path}
    return result, backend


def judge_all(config: BackendConfig, models: list[ModelResults], suites: list[str],
              items: dict[str, list[dict[str, Any]]], resamples: int = 1000, seed: int = 0,
              api_key: str | None = None) -> dict[str, Any]:
    """Every later model against the first, on every suite both have: summary.json's "judge" section."""
    pairs: dict[str, dict[str, Any]] = {}
    backend = None
    for other in models[1:]:
        per_suite = pairs.setdefault(f"{other.label}_vs_{models[0].label}", {})
        for suite in suites:
            if suite in other.suites and suite in models[0].suites:
                by_id = {item["id"]: item for item in items.get(suite, [])}
                per_suite[suite], backend = judge_pair(config, models[0], other, suite, by_id, resamples, seed,
                                                       api_key, backend)
    return {"model": config.model, "backend": config.backend, "template": JUDGE_TEMPLATE_ID, "pairs": pairs}

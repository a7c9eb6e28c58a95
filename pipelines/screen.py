"""Toxicity screen: score every text field, route each record to pass, review or reject. Fails closed.

Scorers (`workbench.core.scorers`, by name): detoxify (its own loading code: a hub model type where a network
allows, or a local checkpoint with `--checkpoint PATH --hf-config DIR`) and, offline, alt-profanity-check (a small
trained classifier shipped on PyPI). Routing per label: every label below its pass threshold -> pass; any label at
or above its reject threshold -> reject; otherwise -> review (a human looks, with the scores shown). Records with
personal data (e-mail, phone, IBAN, student id) or hidden characters (a right-to-left override, a zero-width joiner:
`workbench.core.text.hidden_characters`) go to review whatever their scores.

Fail closed: if the scorer cannot load or fails on a batch, the stage stops with an error and writes nothing;
a record is never passed without scores.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workbench.core.config import defaults
from workbench.core.errors import WorkbenchError
from workbench.core.io import Problem, load_records, write_records
from workbench.core.ledger import Ledger
from workbench.core.records import TEXT_FIELDS, Record
from workbench.core.runs import Outputs, StepResult

# The scorers live in the foundation, by name (eval's toxicity rate uses them too); imported here under the names
# the CLI, the tests and bench/screen.py have always used.
from workbench.core.scorers import (  # noqa: F401
    SCORERS,
    DetoxifyScorer,
    ProfanityScorer,
    Scorer,
    ScorerSettings,
    ScreenError,
    cached_detoxify_weights,
    default_scorer_name,
    known_scorer,
    load_scorer,
    scorer_names,
)
from workbench.core.text import hidden_characters

ROUTES = ("pass", "review", "reject")
# Patterns for personal data. Deliberately simple and documented: they flag for human review, never delete.
PII_PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
    "phone": re.compile(r"(?<!\w)\+?\d[\d ()/-]{7,}\d(?!\w)"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"),
    "student_id": re.compile(r"(?i)\b(?:student|matriculation|matrikel)[- ]?(?:id|no\.?|number|nr\.?)?[:# ]*\d{6,9}\b"),
}


_SCORER = defaults(ScorerSettings)  # the scorer's fields: their meaning, defaults and checks are declared there


class ScreenConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scorer: str = _SCORER.scorer  # a name in workbench.core.scorers.SCORERS
    model: str = _SCORER.model
    checkpoint: str | None = _SCORER.checkpoint
    hf_config: str | None = _SCORER.hf_config
    pass_below: float = Field(0.1, ge=0, le=1)  # every label below this: pass
    reject_at: float = Field(0.8, ge=0, le=1)  # any label at or above this: reject
    label_thresholds: dict[str, tuple[float, float]] = Field(default_factory=dict)  # label -> (pass, reject)
    pii: bool = True  # personal data sends a record to review
    batch_tokens: int = Field(_SCORER.batch_tokens, ge=64)  # speed only
    device: str = _SCORER.device  # speed only
    int8: bool = _SCORER.int8

    _known_scorer = field_validator("scorer")(known_scorer)

    @model_validator(mode="after")
    def _ordered(self) -> ScreenConfig:
        # A pass threshold above the reject threshold would pass what it should reject.
        if self.pass_below > self.reject_at:
            raise ValueError(f"pass_below ({self.pass_below}) is above reject_at ({self.reject_at}): a score "
                             "between them would both pass and be rejected")
        for label, (low, high) in self.label_thresholds.items():
            if not 0 <= low <= high <= 1:
                raise ValueError(f"label threshold {label}={low}:{high}: need 0 <= pass <= reject <= 1")
        return self


SPEED_ONLY = frozenset({"batch_tokens", "device"})


def parse_label_thresholds(values: list[str] | None) -> dict[str, tuple[float, float]]:
    """['insult=0.05:0.5', ...] -> {label: (pass below, reject at)}."""
    thresholds = {}
    for value in values or []:
        label, _, pair = value.partition("=")
        low, _, high = pair.partition(":")
        try:
            thresholds[label.strip()] = (float(low), float(high))
        except ValueError:
            raise WorkbenchError(f"--label-threshold {value!r} is not LABEL=PASS:REJECT, e.g. insult=0.05:0.5") \
                from None
    return thresholds


def find_pii(record: Record) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name in TEXT_FIELDS:
        for kind, pattern in PII_PATTERNS.items():
            hits = pattern.findall(getattr(record, name))
            if hits:
                found.setdefault(kind, []).extend(hits)
    return found


def route(scores: dict[str, float], config: ScreenConfig) -> str:
    """pass, review or reject for one record's per-label maximum scores."""
    verdict = "pass"
    for label, value in scores.items():
        low, high = config.label_thresholds.get(label, (config.pass_below, config.reject_at))
        if value >= high:
            return "reject"
        if value >= low:
            verdict = "review"
    return verdict


@dataclass
class Screened:
    """The screen's verdicts on a set of records: what goes on (pass and review), counts per route, the bias report."""

    kept: list[Record]
    routes: Counter
    bias: dict[str, dict[str, float]]  # identity label -> route -> share
    int8_deviation: float | None = None

    def preview_lines(self, records: list[Record], scorer: str) -> list[str]:
        """A dry run as a command prints it: the routes, the bias report, int8's score change and the five highest
        scores among `records` (every record scored, rejected ones included)."""
        highest = sorted(records, key=lambda r: -r.scores.get("toxicity_max", 0))[:5]
        return route_lines(scorer, self.routes, self.bias, self.int8_deviation, dry_run=True) + \
            [f"  {r.scores['toxicity_max']:.3f}  {r.instruction[:80]!r}" for r in highest]


def route_lines(scorer: str, routes: dict[str, int], bias: dict[str, dict[str, float]], deviation: float | None,
                dry_run: bool = False) -> list[str]:
    """The scorer, the records per route, int8's score change and the bias report, as a command prints them."""
    lines = [f"Scorer: {scorer}" + (" (dry run: nothing written)" if dry_run else "")]
    lines += [f"  {route_}: {routes.get(route_, 0):,}" for route_ in ROUTES]
    if deviation is not None:
        lines.append(f"  int8: largest score change against fp32 on the first texts: {deviation:.4f}")
    lines += [f"  mentions {label}: " + ", ".join(f"{r} {v:.1%}" for r, v in shares.items())
              for label, shares in bias.items()]
    return lines


@dataclass
class ScreenResult(StepResult):
    """A screen run: the step's result, with the scorer, the records per route, the bias report and int8's score
    change (from the manifest's details, which `run` writes)."""

    @property
    def scorer(self) -> str:
        return self.details["scorer"]

    @property
    def routes(self) -> dict[str, int]:
        return {k.removeprefix("route_"): v for k, v in self.counts.items() if k.startswith("route_")}

    @property
    def bias(self) -> dict[str, dict[str, float]]:
        return self.details["bias"]

    @property
    def int8_deviation(self) -> float | None:
        return self.details["int8_deviation"]

    def summary_lines(self) -> list[str]:
        """The step's lines (where the records went, why some were dropped, the manifest), then the routes."""
        return super().summary_lines() + route_lines(self.scorer, self.routes, self.bias, self.int8_deviation)


def screen_records(records: list[Record], config: ScreenConfig, scorer: Scorer, ledger: Ledger) -> Screened:
    """Score every text field and route each record: pass and review records come back (scores in record.scores,
    route in meta.screen_route), rejected ones are dropped through the ledger. Everything is scored before any
    record is routed, so a scorer failure passes nothing."""
    unknown = sorted(set(config.label_thresholds) - set(scorer.labels))
    if unknown:
        raise ScreenError(f"label threshold for {', '.join(unknown)}: {scorer.name} has no such label (its labels: "
                          f"{', '.join(scorer.labels)})")
    texts = [getattr(r, f) for r in records for f in TEXT_FIELDS]
    nonempty = [i for i, t in enumerate(texts) if t.strip()]
    try:
        scored = scorer.score([texts[i] for i in nonempty]) if nonempty else np.zeros((0, len(scorer.labels)))
    except Exception as e:  # fail closed: any scorer failure stops the stage
        raise ScreenError(f"{scorer.name} failed while scoring: {type(e).__name__}: {e}") from e
    if scored.shape != (len(nonempty), len(scorer.labels)) or not np.isfinite(scored).all():
        raise ScreenError(f"{scorer.name} returned {scored.shape} scores for {len(nonempty)} texts, or non-numbers")
    table = np.zeros((len(texts), len(scorer.labels)), dtype=np.float32)
    table[nonempty] = scored
    kept, routes, identity_rows = [], Counter(), []
    for k, record in enumerate(records):
        per_field = table[k * len(TEXT_FIELDS):(k + 1) * len(TEXT_FIELDS)]
        scores = {**record.scores}
        maxima = {label: float(per_field[:, j].max()) for j, label in enumerate(scorer.labels)}
        for f_index, name in enumerate(TEXT_FIELDS):
            for j, label in enumerate(scorer.labels):
                scores[f"toxicity_{name}_{label}"] = round(float(per_field[f_index, j]), 6)
        scores["toxicity_max"] = round(max(maxima.values(), default=0.0), 6)
        toxic_route = route(maxima, config)
        pii = find_pii(record) if config.pii else {}
        hidden = hidden_characters(" ".join(getattr(record, name) for name in TEXT_FIELDS))
        verdict = "review" if (pii or hidden) and toxic_route == "pass" else toxic_route
        reason = None if verdict == "pass" else f"toxicity: {verdict}" if toxic_route != "pass" else \
            "personal data" if pii else "hidden characters"
        meta = {**record.meta, "screen_route": verdict, "screen_scorer": scorer.name, **({"pii": pii} if pii else {})}
        if verdict != "pass":  # what a reviewer should look at (shown and filterable in the review UI)
            meta["screen_reasons"] = [f"toxicity: {label}" for label, value in maxima.items()
                                      if value >= config.label_thresholds.get(label, (config.pass_below,))[0]
                                      ] + [f"personal data: {kind}" for kind in pii] + \
                [f"hidden characters: {name.lower()}" for name in hidden]
        else:
            meta.pop("screen_reasons", None)
        detail = {"route": verdict, "scorer": scorer.name, "toxicity_max": scores["toxicity_max"]}
        routes[verdict] += 1
        identity_rows.append((verdict, per_field.max(axis=0)))
        screened = replace(record, scores=scores, meta=meta)
        if verdict == "reject":
            ledger.drop(screened, reason, detail)
        else:
            kept.append(ledger.log(screened, verdict, reason, detail))
    return Screened(kept, routes, bias_report(scorer.labels, identity_rows), getattr(scorer, "deviation", None))


def run(source: Path, config: ScreenConfig, out: Outputs) -> ScreenResult:
    """The screen stage: SOURCE's records scored and routed; pass and review records to out["records.jsonl"],
    rejected ones to out["dropped.jsonl"]; bad input lines quarantined. Nothing is written if the scorer fails."""
    ledger = out.start(config, [source], SPEED_ONLY)
    problems: list[Problem] = []
    records = load_records(source, problems)
    scorer = load_scorer(config)
    screened = screen_records(records, config, scorer, ledger)
    kept = write_records(out["records.jsonl"], screened.kept)
    counts = {"in": len(records), "out": kept, **{f"route_{k}": v for k, v in sorted(screened.routes.items())}}
    result = out.finish(ledger, counts, problems, scorer=scorer.name, bias=screened.bias,
                        int8_deviation=screened.int8_deviation)
    return ScreenResult(result.manifest, result.problems)


def preview(source: Path, config: ScreenConfig) -> tuple[Screened, list[Record], list[Problem]]:
    """What the screen would do, writing nothing: (verdicts, every record with its scores, bad input lines)."""
    problems: list[Problem] = []
    ledger = Ledger("screen")
    screened = screen_records(load_records(source, problems), config, load_scorer(config), ledger)
    return screened, screened.kept + ledger.dropped, problems


IDENTITY_LABELS = ("male", "female", "homosexual_gay_or_lesbian", "christian", "jewish", "muslim", "black", "white",
                   "psychiatric_or_mental_illness")


def bias_report(labels: list[str], rows: list[tuple[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Share of records mentioning each identity group (its label >= 0.5), per route; models without identity
    labels (original, profanity-check) give an empty report."""
    report: dict[str, dict[str, float]] = {}
    per_route = Counter(route_ for route_, _ in rows)
    for j, label in enumerate(labels):
        if label not in IDENTITY_LABELS:
            continue
        mentions = Counter(route_ for route_, values in rows if values[j] >= 0.5)
        report[label] = {r: round(mentions[r] / per_route[r], 4) if per_route[r] else 0.0 for r in ROUTES}
    return report

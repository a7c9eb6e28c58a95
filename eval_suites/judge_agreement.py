"""Is the pairwise judge to be trusted? `workbench eval judge-agreement`: the judge (both orders, as `eval compare`
asks it) on pairs that people ranked, against the people's majority.

    read, problems = read_pairs(path)              # an `annotate export` of a comparison, or pairs of `data export`
    report = judge_agreement(judge_config, read)   # accuracy and Cohen's kappa with bootstrap CIs, position bias

Each pair is put in a fixed order (x, y) that does not depend on who won (by the two responses' record ids), so the
judge's first slot is the better answer as often as the people's choice puts it there. The people's label is the
side most of them ranked higher (a pair they split evenly has no majority and is left out, counted). The judge's
label is the side it prefers in both orders, else "tie" (it changed its mind with the order, said tie, or gave no
verdict). Accuracy counts a judge tie as a miss; Cohen's kappa is over the labels x / y / tie against x / y.
Position bias: of the single-order verdicts naming A or B, the share naming A (the first slot; 0.5 is unbiased).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.backends import BackendConfig
from workbench.core.io import Problem, record_rows
from workbench.core.records import record_id


@dataclass
class HumanPair:
    instruction: str
    context: str
    x: str  # the two responses, in a fixed order that does not depend on the people's choice
    y: str
    prefer_x: int  # annotators who ranked x higher
    prefer_y: int
    source: str  # where the pair was read: file:line
    ids: tuple[str, str] = ("", "")

    @property
    def majority(self) -> str | None:
        return None if self.prefer_x == self.prefer_y else "x" if self.prefer_x > self.prefer_y else "y"


@dataclass
class JudgeAgreement:
    judge: str
    pairs: int  # with a human majority, judged
    no_majority: int  # split evenly by the people: left out
    not_human: int  # pairs of the file no person chose (judge or unknown sources): left out
    accuracy: dict[str, float | None]  # mean, ci_low, ci_high
    kappa: dict[str, float | None]
    decided: float | None  # share of pairs the judge decided the same way in both orders
    position_bias: float | None  # share of single-order verdicts naming A, of those naming A or B
    unparsed: int  # single-order verdicts that were none of A, B, tie
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per pair: labels, verdicts, texts

    DISAGREEMENT_COLUMNS = ("instruction", "people prefer", "judge", "verdicts (A first, then swapped)")

    def summary_lines(self) -> list[str]:
        """Agreement and kappa with their CIs, how decided and how biased the judge is, the pairs left out."""
        decided = "-" if self.decided is None else f"{100 * self.decided:.0f}%"
        bias = "-" if self.position_bias is None else f"{100 * self.position_bias:.0f}%"
        lines = [f"Judge {self.judge} on {self.pairs:,} pairs people ranked (both orders each): agreement with "
                 f"their majority {_ci(self.accuracy)}, Cohen's kappa {_ci(self.kappa)} (95% bootstrap CIs)",
                 f"decided the same way in both orders: {decided}; position bias: prefers the first answer in "
                 f"{bias} of its verdicts (50% is unbiased); {self.unparsed:,} verdicts unparsed"]
        left = [f"{self.no_majority:,} split evenly by the people"] if self.no_majority else []
        left += [f"{self.not_human:,} not chosen by people"] if self.not_human else []
        if left:
            lines.append(f"left out: {'; '.join(left)}")
        return lines

    @property
    def disagreements(self) -> list[dict[str, Any]]:
        """The rows of the pairs where the judge's label is not the people's."""
        return [r for r in self.rows if not r["agree"]]

    def disagreement_title(self, shown: int = 5) -> str:
        wrong = len(self.disagreements)
        return f"Where the judge disagrees ({wrong:,} pairs; first {min(shown, wrong)})"

    def disagreement_rows(self, shown: int = 5) -> list[tuple[str, str, str, str]]:
        """The first SHOWN disagreements as table cells (`DISAGREEMENT_COLUMNS`): the instruction, the answer the
        people prefer, the judge's (or tie), its verdicts in both orders."""
        cells = []
        for row in self.disagreements[:shown]:
            people = row[row["people"]]
            judge = "tie" if row["judge"] == "tie" else row[row["judge"]]
            cells.append((row["instruction"][:60], people[:60], judge[:60], " / ".join(map(str, row["verdicts"]))))
        return cells


def _ci(rate: dict[str, float | None]) -> str:
    if rate["mean"] is None:
        return "-"
    ci = f" [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}]" if rate["ci_low"] is not None else ""
    return f"{rate['mean']:.2f}{ci}"


def _ordered(instruction: str, context: str, a: tuple[str, str], b: tuple[str, str], prefer_a: int, prefer_b: int,
             source: str) -> HumanPair:
    """(id, text) of both sides; x is the one with the smaller id."""
    if a[0] > b[0]:
        a, b, prefer_a, prefer_b = b, a, prefer_b, prefer_a
    return HumanPair(instruction, context, a[1], b[1], prefer_a, prefer_b, source, (a[0], b[0]))


def _pairs_of_export_row(row: dict[str, Any], where: str) -> list[HumanPair]:
    """Every two candidates of one comparison, with how many kept-and-ranked answers put each above the other."""
    from annotation.agreement import candidate_ranks

    fields = row.get("fields") or {}
    rankings = [r for resp in row["responses"] if resp.get("status") == "submitted"
                and (resp.get("values") or {}).get("decision") == "keep"
                and (r := candidate_ranks((resp.get("values") or {}).get("ranking"), row))]
    if not rankings:
        return []
    candidates = [c.get("id") for c in (row.get("record") or {}).get("candidates") or []]
    slots = sorted(rankings[0], key=lambda s: int(s.split("_")[-1]))
    out = []
    for i, a in enumerate(slots):
        for b in slots[i + 1:]:
            ids = []
            for s in (a, b):
                k = int(s.split("_")[-1]) - 1  # slot k holds the group's k-th candidate (annotation.mapping)
                ids.append(candidates[k] if k < len(candidates) else
                           record_id(fields.get("instruction", ""), fields.get("context", ""), fields[s]))
            out.append(_ordered(fields.get("instruction", ""), fields.get("context", ""), (ids[0], fields[a]),
                                (ids[1], fields[b]), sum(r[a] < r[b] for r in rankings),
                                sum(r[b] < r[a] for r in rankings), where))
    return out


def human_pairs(path: Path, problems: list[Problem]) -> tuple[list[HumanPair], int]:
    """The people's pairs of PATH and how many of its pairs no person chose. PATH: an `annotate export` file of a
    comparison dataset (every two candidates of each ranked record), or a pairs file of `data export --format dpo`
    (ranking pairs carry the annotators' split; a correction is one reviewer's choice)."""
    path = Path(path)
    pairs, not_human = [], 0
    for line, row, raw in record_rows(path, problems):
        where = f"{path}:{line}"
        if isinstance(row.get("responses"), list) and isinstance(row.get("fields"), dict):
            pairs += _pairs_of_export_row(row, where)
            continue
        bad = next((c for c in ("chosen", "rejected") if not isinstance(row.get(c), str)), None)
        if bad:
            problems.append(Problem(str(path), line, bad, "neither an `annotate export` row nor a preference pair",
                                    raw))
            continue
        detail = row.get("detail") if isinstance(row.get("detail"), dict) else {}
        if row.get("source") == "ranking" and "prefer_chosen" in detail:
            votes = (int(detail["prefer_chosen"]), int(detail["prefer_rejected"]))
        elif row.get("source") == "correction":
            votes = (1, 0)
        else:
            not_human += 1
            continue
        chosen = (str(row.get("chosen_id") or record_id(row.get("instruction", ""), "", row["chosen"])), row["chosen"])
        rejected = (str(row.get("rejected_id") or record_id(row.get("instruction", ""), "", row["rejected"])),
                    row["rejected"])
        pairs.append(_ordered(str(row.get("instruction") or row.get("prompt") or ""), str(row.get("context") or ""),
                              chosen, rejected, *votes, where))
    return pairs, not_human


def _rate(values: np.ndarray, index: np.ndarray | None, statistic) -> dict[str, float | None]:
    if index is None or not len(values):
        return {"mean": None, "ci_low": None, "ci_high": None}
    resampled = [statistic(values[i]) for i in index]
    resampled = [v for v in resampled if v is not None]
    low, high = np.percentile(resampled, [2.5, 97.5]) if resampled else (None, None)
    return {"mean": statistic(values), "ci_low": None if low is None else float(low),
            "ci_high": None if high is None else float(high)}


def score_agreement(judge: str, pairs: list[HumanPair], verdicts: list[tuple[str | None, str | None]],
                    no_majority: int = 0, not_human: int = 0, resamples: int = 1000, seed: int = 0
                    ) -> JudgeAgreement:
    """The report from the people's pairs (with a majority) and the judge's (forward, backward) verdicts on them."""
    from annotation.agreement import cohen_kappa
    from eval_suites.judge import preferred

    judged = [preferred(*v) or "tie" for v in verdicts]
    human = [p.majority for p in pairs]
    both = np.array(list(zip(judged, human)), dtype=object).reshape(-1, 2)
    index = np.random.default_rng(seed).integers(0, len(both), size=(resamples, len(both))) if len(both) else None

    def accuracy(rows: np.ndarray) -> float:
        return float(np.mean([j == h for j, h in rows]))

    def kappa(rows: np.ndarray) -> float | None:
        return cohen_kappa([j for j, _ in rows], [h for _, h in rows])

    single = [v for pair in verdicts for v in pair]
    named = [v for v in single if v in ("A", "B")]
    rows = [{"instruction": p.instruction, "x": p.x, "y": p.y, "ids": list(p.ids), "people": p.majority,
             "prefer_x": p.prefer_x, "prefer_y": p.prefer_y, "judge": j, "verdicts": list(v), "agree": j == p.majority,
             "source": p.source} for p, j, v in zip(pairs, judged, verdicts)]
    return JudgeAgreement(judge, len(pairs), no_majority, not_human, _rate(both, index, accuracy),
                          _rate(both, index, kappa),
                          float(np.mean([j != "tie" for j in judged])) if judged else None,
                          named.count("A") / len(named) if named else None, sum(v is None for v in single), rows)


@dataclass
class Read:
    pairs: list[HumanPair]
    not_human: int


def read_pairs(path: Path) -> tuple[Read, list[Problem]]:
    """`human_pairs` of a file that must exist and hold some: (what was read, bad lines)."""
    from workbench.core.errors import InputError
    from workbench.core.io import check_readable

    check_readable(path)
    problems: list[Problem] = []
    pairs, not_human = human_pairs(path, problems)
    if not pairs:
        raise InputError(f"{path}: no pair that people ranked or chose"
                         + (f" ({not_human:,} pairs from a judge or an unknown source)" if not_human else ""),
                         hint="give an `annotate export` of a comparison dataset (`annotate push --compare`), or "
                              "the pairs `data export --format dpo` made from its pull")
    return Read(pairs, not_human), problems


def judge_agreement(config: BackendConfig, read: Read, resamples: int = 1000, seed: int = 0,
                    api_key: str | None = None) -> JudgeAgreement:
    """The judge on every pair with a human majority, both orders (cached), scored against the people."""
    from eval_suites.judge import judge_both_orders

    pairs, not_human = read.pairs, read.not_human
    with_majority = [p for p in pairs if p.majority]
    verdicts, _, _ = judge_both_orders(config, [(p.instruction, p.context, p.x, p.y) for p in with_majority],
                                       api_key) if with_majority else ([], None, "")
    if verdicts and all(v is None for pair in verdicts for v in pair):
        # Scored as ties, these would give an agreement (kappa 0.00 [0.00, 0.00]) that measured nothing.
        from workbench.core.errors import WorkbenchError

        raise WorkbenchError(f"the judge {config.model} gave no verdict that could be read (A, B or tie) in "
                             f"{2 * len(verdicts):,} answers: nothing to compare with the people",
                             hint="check the judge's prompt format and model (a base model does not follow it); "
                                  "its answers are in the judge cache")
    return score_agreement(config.model, with_majority, verdicts, len(pairs) - len(with_majority), not_human,
                           resamples, seed)


def to_dict(result: JudgeAgreement) -> dict[str, Any]:
    return asdict(result)

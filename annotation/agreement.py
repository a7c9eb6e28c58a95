"""Inter-annotator agreement over the answers (submitted responses, and the Discard button as a discard vote):
percent agreement, Cohen's kappa per pair of annotators, Krippendorff's alpha (the `krippendorff` package), and what
each annotator did. Rankings of a comparison: the share of identical rankings, Kendall's tau per pair of annotators
(mean over the records both ranked) and Krippendorff's alpha over every (record, candidate) rank, ordinal.

Which answers are compared, and how, is their question kind's `AgreementRule` (`annotation.questions`). Input is the
export rows of `annotation.mapping.export_rows` (so it works on a backup file as well as on a live server).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from annotation.mapping import TEXT_NAMES, export_rows
from annotation.questions import DECISION, DECISIONS, Question, both_sets, measured
from annotation.questions import candidate_ranks as candidate_ranks  # eval_suites.judge_agreement reads it here
from workbench.core.io import Problem, read_json_lines


@dataclass
class QuestionAgreement:
    question: str
    items: int  # records answered by at least two annotators
    percent: float | None  # mean over those records of the share of annotator pairs giving the same answer
    alpha: float | None
    # pair -> (Cohen's kappa, or for a ranking the mean Kendall's tau, n)
    kappa: dict[tuple[str, str], tuple[float | None, int]] = field(default_factory=dict)
    pairwise: str = "cohen_kappa"  # the statistic in `kappa` (the question kind's AgreementRule.pairwise)
    always_reported: bool = True  # False: left out of `to_dict` when no record has two answers


@dataclass
class Agreement:
    questions: list[QuestionAgreement]
    annotators: dict[str, Counter]  # username -> counts of submitted/draft/discarded and keep/discard


def cohen_kappa(a: list, b: list) -> float | None:
    """Cohen's kappa for two raters over the same items: (p_o - p_e) / (1 - p_e); None when undefined
    (no items, or both raters always gave one and the same answer, so chance agreement is 1)."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's tau-b between two rankings of the same items (ties allowed); None when either ranks all alike."""
    from scipy.stats import kendalltau

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(kendalltau(a, b).statistic)


def _alpha(table: dict[str, dict[str, object]], annotators: list[str], level: str) -> float | None:
    import krippendorff
    import numpy as np

    values = sorted({v for answers in table.values() for v in answers.values()}, key=str)
    if len(values) < 2:
        return None  # one value everywhere: no variation, alpha is undefined
    code = {v: i for i, v in enumerate(values)}
    if level != "nominal":
        code = {v: float(v) for v in values}
    data = np.full((len(annotators), len(table)), np.nan)
    for j, answers in enumerate(table.values()):
        for i, user in enumerate(annotators):
            if user in answers:
                data[i, j] = code[answers[user]]
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def _mean_tau(both: list[tuple[dict, dict]]) -> float | None:
    taus = [kendall_tau([x[k] for k in sorted(x)], [y[k] for k in sorted(x)]) for x, y in both]
    taus = [t for t in taus if t is not None]
    return sum(taus) / len(taus) if taus else None


# AgreementRule.pairwise -> (the name of one pair's value in `to_dict`, the statistic over the answers both gave)
PAIRWISE = {
    "cohen_kappa": ("kappa", lambda both: cohen_kappa([x for x, _ in both], [y for _, y in both])),
    "kendall_tau": ("mean_tau", _mean_tau),
}


def agreement(rows: list[dict], questions: tuple[Question, ...] | None = None) -> Agreement:
    """Agreement on every measured question (`annotation.questions.measured`; by default those of both question
    sets) and what each annotator did (a correction: an answer to a question that corrects a text)."""
    asked = measured(questions)
    corrections = [q.name for q in both_sets(questions) if q.corrects in TEXT_NAMES]
    annotators: dict[str, Counter] = defaultdict(Counter)
    tables: dict[str, dict[str, dict[str, object]]] = {q.name: {} for q in asked}
    for row in rows:
        for response in row.get("responses") or []:
            user = response.get("username") or str(response["user_id"])
            annotators[user][response["status"]] += 1
            if response["status"] == "discarded":  # the UI's Discard button: a discard vote (annotation.votes)
                values = {DECISION: "discard"}
            elif response["status"] == "submitted":
                values = response.get("values") or {}
            else:
                continue
            if values.get(DECISION) in DECISIONS:
                annotators[user][values[DECISION]] += 1
            if any(values.get(name) for name in corrections):
                annotators[user]["corrected"] += 1
            for question in asked:
                if question.name not in values:
                    continue
                answer = question.kind_spec.agreement.answer(values[question.name], row)
                if answer is not None:
                    tables[question.name].setdefault(row["id"], {})[user] = answer
    names = sorted(annotators)
    results = []
    for question in asked:
        rule = question.kind_spec.agreement
        table = {rid: answers for rid, answers in tables[question.name].items() if len(answers) >= 2}
        shares = []
        for answers in table.values():
            pairs = list(combinations(answers.values(), 2))
            shares.append(sum(x == y for x, y in pairs) / len(pairs))
        kappas = {}
        for u, v in combinations(names, 2):
            both = [(answers[u], answers[v]) for answers in table.values() if u in answers and v in answers]
            if both:
                kappas[(u, v)] = (PAIRWISE[rule.pairwise][1](both), len(both))
        if rule.per_candidate:  # every candidate's rank is an item
            table_for_alpha = {f"{rid}/{k}": {u: ranks[k] for u, ranks in answers.items()}
                               for rid, answers in table.items() for k in next(iter(answers.values()))}
        else:
            table_for_alpha = table
        results.append(QuestionAgreement(question.name, len(table), sum(shares) / len(shares) if shares else None,
                                         _alpha(table_for_alpha, names, rule.level) if table else None, kappas,
                                         rule.pairwise, rule.always_reported))
    return Agreement(results, dict(annotators))


def to_dict(result: Agreement) -> dict:
    return {"questions": [{"question": q.question, "records": q.items, "percent_agreement": q.percent,
                           "krippendorff_alpha": q.alpha,
                           q.pairwise: [{"annotators": [a, b], "records": n, PAIRWISE[q.pairwise][0]: k}
                                        for (a, b), (k, n) in q.kappa.items()]}
                          for q in result.questions if q.always_reported or q.items],
            "annotators": {name: dict(counts) for name, counts in sorted(result.annotators.items())}}


def read_export(path: Path) -> tuple[list[dict], list[Problem]]:
    """The rows of an `annotate export` file; lines that are not export rows are returned as problems."""
    problems: list[Problem] = []
    rows = []
    for line, obj, raw in read_json_lines(path, problems):
        if not isinstance(obj.get("id"), str) or not isinstance(obj.get("responses"), list):
            field_name = "id" if not isinstance(obj.get("id"), str) else "responses"
            problems.append(Problem(str(path), line, field_name, "missing or not an export row "
                                    "(`workbench annotate export` writes them)", raw))
            continue
        rows.append(obj)
    return rows, problems


def server_rows(client, dataset: str, workspace: str) -> list[dict]:
    """The export rows of a dataset on a server."""
    from annotation.client import fetch, user_names

    return list(export_rows(fetch(client, dataset, workspace), user_names(client)))

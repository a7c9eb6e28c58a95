"""Inter-annotator agreement over the answers (submitted responses, and the Discard button as a discard vote):
percent agreement, Cohen's kappa per pair of annotators, Krippendorff's alpha (the `krippendorff` package), and what
each annotator did. Rankings of a comparison: the share of identical rankings, Kendall's tau per pair of annotators
(mean over the records both ranked) and Krippendorff's alpha over every (record, candidate) rank, ordinal.

Input is the export rows of `annotation.mapping.export_rows` (so it works on a backup file as well as on a live server).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from workbench.core.io import Problem, read_json_lines

# (question, level of measurement for Krippendorff's alpha)
QUESTIONS = (("decision", "nominal"), ("category", "nominal"), ("quality", "ordinal"), ("ranking", "ordinal"))


@dataclass
class QuestionAgreement:
    question: str
    items: int  # records answered by at least two annotators
    percent: float | None  # mean over those records of the share of annotator pairs giving the same answer
    alpha: float | None
    # pair -> (Cohen's kappa, or for a ranking the mean Kendall's tau, n)
    kappa: dict[tuple[str, str], tuple[float | None, int]] = field(default_factory=dict)


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


def agreement(rows: list[dict]) -> Agreement:
    annotators: dict[str, Counter] = defaultdict(Counter)
    tables: dict[str, dict[str, dict[str, object]]] = {q: {} for q, _ in QUESTIONS}
    for row in rows:
        for response in row.get("responses") or []:
            user = response.get("username") or str(response["user_id"])
            annotators[user][response["status"]] += 1
            if response["status"] == "discarded":  # the UI's Discard button: a discard vote (annotation.votes)
                values = {"decision": "discard"}
            elif response["status"] == "submitted":
                values = response.get("values") or {}
            else:
                continue
            if values.get("decision") in ("keep", "discard"):
                annotators[user][values["decision"]] += 1
            if values.get("corrected_instruction") or values.get("corrected_response"):
                annotators[user]["corrected"] += 1
            for question, _ in QUESTIONS:
                answer = candidate_ranks(values[question], row) if question == "ranking" and question in values else \
                    values.get(question)
                if answer is not None:
                    tables[question].setdefault(row["id"], {})[user] = answer
    names = sorted(annotators)
    results = []
    for question, level in QUESTIONS:
        table = {rid: answers for rid, answers in tables[question].items() if len(answers) >= 2}
        shares = []
        for answers in table.values():
            pairs = list(combinations(answers.values(), 2))
            shares.append(sum(x == y for x, y in pairs) / len(pairs))
        kappas = {}
        for u, v in combinations(names, 2):
            both = [(answers[u], answers[v]) for answers in table.values() if u in answers and v in answers]
            if both and question == "ranking":
                taus = [kendall_tau([x[k] for k in sorted(x)], [y[k] for k in sorted(x)]) for x, y in both]
                taus = [t for t in taus if t is not None]
                kappas[(u, v)] = (sum(taus) / len(taus) if taus else None, len(both))
            elif both:
                kappas[(u, v)] = (cohen_kappa([x for x, _ in both], [y for _, y in both]), len(both))
        if question == "ranking":  # every candidate's rank is an item
            table_for_alpha = {f"{rid}/{k}": {u: ranks[k] for u, ranks in answers.items()}
                               for rid, answers in table.items() for k in next(iter(answers.values()))}
        else:
            table_for_alpha = table
        results.append(QuestionAgreement(question, len(table), sum(shares) / len(shares) if shares else None,
                                         _alpha(table_for_alpha, names, level) if table else None, kappas))
    return Agreement(results, dict(annotators))


def candidate_ranks(value, row: dict) -> dict[str, int] | None:
    """slot -> competition rank among the row's real candidates (empty slots left out), from a ranking answer."""
    from annotation.mapping import EMPTY_SLOT, ranking_of

    ranks = ranking_of(value)
    if ranks is None:
        return None
    fields = row.get("fields") or {}
    real = [k for k in ranks if fields.get(k) != EMPTY_SLOT]
    return {k: 1 + sum(ranks[j] < ranks[k] for j in real) for k in real}


def to_dict(result: Agreement) -> dict:
    return {"questions": [{"question": q.question, "records": q.items, "percent_agreement": q.percent,
                           "krippendorff_alpha": q.alpha,
                           ("kendall_tau" if q.question == "ranking" else "cohen_kappa"):
                               [{"annotators": [a, b], "records": n,
                                 ("mean_tau" if q.question == "ranking" else "kappa"): k}
                                for (a, b), (k, n) in q.kappa.items()]}
                          for q in result.questions if q.question != "ranking" or q.items],
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
    from annotation.mapping import export_rows

    return list(export_rows(fetch(client, dataset, workspace), user_names(client)))

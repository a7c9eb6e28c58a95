"""The contamination stage (`workbench contamination`, the recipe's gate before finetuning): every item of eval files
or suite folders checked against a training file, the findings written as a report. The check itself
(`ContaminationConfig`, `check`, `load_eval_items`) is `eval_suites.contamination`, which the eval runner uses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.contamination import ContaminationConfig, EvalItem, Finding, check, load_eval_items
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.io import Problem, atomic_write_json, load_records
from workbench.core.runs import Outputs, StepResult

__all__ = ["ContaminationConfig", "ContaminationResult", "EvalItem", "Finding", "check", "load_eval_items", "run"]


@dataclass
class ContaminationResult(StepResult):
    findings: list[Finding] = field(default_factory=list)
    train: Path | None = None  # the training file checked

    def summary_lines(self) -> list[str]:
        """Each contaminated item with the training records it matches, then how many and where the report went
        (the bad input lines are shown apart, on stderr)."""
        lines = []
        for finding in self.findings:
            matches = {**finding.near_duplicates, **{k: "13-gram" for k in finding.shared_ngrams}}
            lines.append(f"{finding.item.source}: {finding.item.id}: {finding.item.question[:70]!r} ~ train "
                         + ", ".join(f"{k} ({v})" for k, v in matches.items()))
        lines.append(f"{self.counts['contaminated']} of {self.counts['items_checked']} eval item(s) contaminated by "
                     f"{self.train}; report: {self.files['report.json']}")
        return lines

    def gate_error(self) -> WorkbenchError | None:
        """The contamination gate: what stops a recipe before finetuning, and `--fail-on-contamination`'s exit 1."""
        if not self.findings:
            return None
        return WorkbenchError(f"contamination: {len(self.findings)} eval item(s) near-duplicate or share a 13-gram "
                              f"with the curated set ({', '.join(f.item.id for f in self.findings[:5])}); see "
                              f"{self.files['report.json']}",
                              hint="remove those records from the curated set (or the items from the suite) and run "
                                   "again")


def run(train: Path, evals: list[Path], config: ContaminationConfig, out: Outputs) -> ContaminationResult:
    """The contamination check: every item of the eval files or suite folders EVALS against the training records
    in TRAIN; the findings go to out["report.json"]. Deciding what a finding means (a gate, an exit code) is the
    caller's."""
    ledger = out.start(config, [train, *evals], drops=False)
    problems: list[Problem] = []
    items = [item for path in evals for item in load_eval_items(path, problems)]
    bad: list[Problem] = []
    records = load_records(train, bad)
    problems += bad
    # Nothing checked is not "clean": no training record (or no eval item) read means no verdict at all.
    if not records:
        raise InputError(f"{train}: no valid training record to check ({len({p.line for p in bad})} bad line(s))",
                         hint="fix the file; nothing was checked, so nothing can be called clean")
    if not items:
        raise InputError(f"{', '.join(map(str, evals))}: no eval item to check against")
    findings = check(records, items, config)
    atomic_write_json(out["report.json"], {"train": str(train), "eval": [str(p) for p in evals],
                                           "config": config.model_dump(), "items_checked": len(items),
                                           "contaminated": [f.to_dict() for f in findings]})
    result = out.finish(ledger, {"items_checked": len(items), "contaminated": len(findings)}, problems)
    return ContaminationResult(result.manifest, result.problems, findings, train)

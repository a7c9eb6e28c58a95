"""The suites' questions kept out of training (a recipe's step before the contamination gate and finetuning).

A curated record is held out, through the ledger with the eval item it matches, when its question is a suite
question or a near-duplicate of one (`eval_suites.contamination.same_questions`), or when the contamination check
flags it (its question and answer together near-duplicate an item's, or share a 13-gram with it:
`eval_suites.contamination.check`). What is left is what finetuning reads; the gate after it then checks that set.
On a suite drafted from the recipe's own pages, whose references are the pages' own sentences, a grounded answer
that quotes the same sentence is held out here rather than stopping the run.
"""

from __future__ import annotations

from pathlib import Path

from eval_suites.contamination import ContaminationConfig, check, load_eval_items, same_questions
from workbench.core.errors import InputError
from workbench.core.io import Problem, load_records, write_records
from workbench.core.runs import Outputs, StepResult


def run(curated: Path, suites: list[Path], config: ContaminationConfig, out: Outputs) -> StepResult:
    """out["records.jsonl"]: the curated records that ask no suite question and share no text with a suite item."""
    ledger = out.start(config, [curated, *suites])
    problems: list[Problem] = []
    items = [item for path in suites for item in load_eval_items(path, problems)]
    bad: list[Problem] = []
    records = load_records(curated, bad)
    problems += bad
    if not records:
        raise InputError(f"{curated}: no curated record to train on")
    asked = same_questions(records, items, config)
    flagged = {}
    for finding in check(records, items, config):
        for train_id, similarity in finding.near_duplicates.items():
            flagged.setdefault(train_id, (finding.item, f"near-duplicate (Jaccard {similarity:.2f})"))
        for train_id, gram in finding.shared_ngrams.items():
            flagged.setdefault(train_id, (finding.item, f"shares the {config.overlap_ngram}-gram {gram!r}"))
    kept = []
    for j, record in enumerate(records):
        if j in asked:
            item, similarity = items[asked[j][0]], asked[j][1]
            ledger.drop(record, "asks a suite question", {"item": item.id, "eval": item.source,
                                                          "question": item.question, "similarity": similarity})
        elif record.id in flagged:
            item, how = flagged[record.id]
            ledger.drop(record, "shares text with a suite item", {"item": item.id, "eval": item.source,
                                                                  "how": how})
        else:
            kept.append(record)
    write_records(out["records.jsonl"], kept)
    return out.finish(ledger, {"in": len(records) + len(bad), "out": len(kept),
                               "held_out": len(records) - len(kept), "items": len(items)}, problems)

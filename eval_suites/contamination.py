"""Contamination check: eval items whose question + reference answer appear in the training data.

An item is contaminated when its text is a near-duplicate (the dedup definition: Jaccard of word 3-grams
>= threshold) of a training record's instruction + response, or when the two share a 13-gram of
lower-cased words (the GPT-3 paper's overlap test). Contexts are left out on both sides: a training record
and an eval item that quote the same catalog page are not contamination.

The check is here, below the stages that use it: the eval runner checks an adapter's training data against each
suite (`eval_suites.runner.contamination_of`), and the contamination stage (`pipelines.contamination.run`,
`workbench contamination`) checks a training file against eval files and writes the report.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import InputError
from workbench.core.io import Problem, read_json_lines
from workbench.core.minhash import DedupConfig, find_duplicates, shingle_texts
from workbench.core.records import Record

QUESTION_FIELDS = ("question", "instruction", "prompt")
ANSWER_FIELDS = ("references", "answers", "reference", "answer", "response")


class ContaminationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(0.7, gt=0, le=1)  # near-duplicate Jaccard, as in dedup
    ngram: int = Field(3, ge=1)  # dedup's shingle size
    overlap_ngram: int = Field(13, ge=1)  # a shared run of this many words is contamination


@dataclass(frozen=True)
class EvalItem:
    id: str
    source: str  # file it came from
    question: str
    references: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join([self.question, *self.references])


@dataclass
class Finding:
    item: EvalItem
    near_duplicates: dict[str, float] = field(default_factory=dict)  # train id -> Jaccard
    shared_ngrams: dict[str, str] = field(default_factory=dict)  # train id -> one shared n-gram

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.id, "eval": self.item.source, "question": self.item.question,
                "near_duplicates": self.near_duplicates, "shared_ngrams": self.shared_ngrams}


def load_eval_items(path: str | Path, problems: list[Problem]) -> list[EvalItem]:
    """Items of an eval file (JSONL) or suite folder (its items.jsonl): a question and reference answers."""
    path = Path(path)
    if path.is_dir():
        path = path / "items.jsonl"
    if not path.exists():
        raise InputError(f"{path}: no such eval file or suite folder")
    items = []
    for number, obj, raw in read_json_lines(path, problems):
        question = next((obj[f] for f in QUESTION_FIELDS if isinstance(obj.get(f), str) and obj[f].strip()), None)
        answers = next((obj[f] for f in ANSWER_FIELDS if obj.get(f)), [])
        answers = [answers] if isinstance(answers, str) else answers
        if question is None or not all(isinstance(a, str) for a in answers):
            problems.append(Problem(str(path), number, "question" if question is None else "references",
                                    f"expected a {'/'.join(QUESTION_FIELDS)} string and string answers", raw))
            continue
        items.append(EvalItem(str(obj.get("id", f"line-{number}")), str(path), question, tuple(answers)))
    return items


def word_ngrams(text: str, n: int) -> set[str]:
    words = re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def train_text(record: Record) -> str:
    return f"{record.instruction} {record.response}"


def check(train: list[Record], items: list[EvalItem], config: ContaminationConfig) -> list[Finding]:
    """Every contaminated item with the training ids it matches; clean items are left out."""
    findings: dict[int, Finding] = {}
    shingled = shingle_texts([item.text for item in items] + [train_text(r) for r in train], config.ngram)
    plan = find_duplicates(shingled, DedupConfig(threshold=config.threshold, ngram=config.ngram), len(items))
    for (i, j), similarity in plan.similarities.items():
        if i < len(items) <= j:
            finding = findings.setdefault(i, Finding(items[i]))
            finding.near_duplicates[train[j - len(items)].id] = round(similarity, 6)
    index: dict[str, list[str]] = {}
    for record in train:
        for gram in word_ngrams(train_text(record), config.overlap_ngram):
            index.setdefault(gram, []).append(record.id)
    for i, item in enumerate(items):
        for gram in sorted(word_ngrams(item.text, config.overlap_ngram)):
            for train_id in index.get(gram, ()):
                findings.setdefault(i, Finding(item)).shared_ngrams.setdefault(train_id, gram)
    return [findings[i] for i in sorted(findings)]



class QuestionIndex:
    """Eval questions, to find a question that is one of them or a near-duplicate: the same normalised words, or a
    Jaccard of word n-grams at or above the threshold (exact, through an index of the n-grams: no false match)."""

    def __init__(self, questions: list[str], config: ContaminationConfig):
        self.config = config
        self.keys = {self.key(q): i for i, q in reversed(list(enumerate(questions)))}
        self.grams = [word_ngrams(q, config.ngram) for q in questions]
        self.index: dict[str, list[int]] = {}
        for i, grams in enumerate(self.grams):
            for gram in grams:
                self.index.setdefault(gram, []).append(i)

    @staticmethod
    def key(text: str) -> str:
        return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower()))

    def match(self, question: str) -> tuple[int, float] | None:
        """(the index of the eval question it repeats, the similarity), or None."""
        if (same := self.keys.get(self.key(question))) is not None:
            return same, 1.0
        grams = word_ngrams(question, self.config.ngram)
        shared: dict[int, int] = {}
        for gram in grams:
            for i in self.index.get(gram, ()):
                shared[i] = shared.get(i, 0) + 1
        best = max(((n / len(grams | self.grams[i]), -i) for i, n in shared.items()), default=None)
        if best is None or best[0] < self.config.threshold:
            return None
        return -best[1], round(best[0], 6)


def same_questions(train: list[Record], items: list[EvalItem], config: ContaminationConfig
                   ) -> dict[int, tuple[int, float]]:
    """Training records whose *question* (the instruction alone) is an eval item's question or a near-duplicate of it
    (`QuestionIndex`): train index -> (item index, similarity)."""
    index = QuestionIndex([item.question for item in items], config)
    return {j: found for j, record in enumerate(train) if (found := index.match(record.instruction)) is not None}

"""Document-grounded questions: for each document (a programme page), questions a prospective student could
ask, each answered with the document as context, as closed_qa records. An answer is kept only when enough
of its content words occur in the document (the grounding check).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipelines.resumable import ResumableOutput
from workbench.core.backends import Backend, take_usage
from workbench.core.errors import InputError, NothingGenerated
from workbench.core.fingerprint import fingerprint
from workbench.core.models import NOT_ANSWERED, GenerationParams
from workbench.core.pages import PAGE_SUFFIXES, page_files, read_page
from workbench.core.prompts import (
    ANSWER_STOPS,
    ANSWER_TEMPLATE_ID,
    DOC_QUESTIONS_TEMPLATE_ID,
    doc_questions_prompt,
    format_prompt,
)
from workbench.core.records import Record
from workbench.core.runs import Outputs, StepResult
from workbench.core.text import grounding

DOC_SUFFIXES = PAGE_SUFFIXES  # what workbench.core.pages reads


class FromDocsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    num: int = Field(10, ge=1)  # questions asked per document (part)
    grounding: float = Field(0.5, ge=0, le=1)  # share of an answer's content words that must be in the document
    max_doc_tokens: int = Field(1500, ge=64)  # longer documents are split at headings to fit the model
    question_sampling: GenerationParams = GenerationParams(temperature=0.7, top_p=0.9, max_new_tokens=256,
                                                           stop=("\n\n",))
    answer_sampling: GenerationParams = GenerationParams(max_new_tokens=200, stop=ANSWER_STOPS)


@dataclass(frozen=True)
class Document:
    name: str  # file name, and "#part N" when split
    text: str


def read_document(path: Path) -> str:
    """What a person reads on a page: Markdown without its YAML header, text, the main text of an HTML page, the text
    layer of a PDF (`workbench.core.pages`)."""
    return read_page(path).text


def split_by_headings(text: str, budget: int, count: Callable[[str], int]) -> list[str]:
    """Whole text when it fits; else sections (at Markdown headings) packed greedily into parts that fit.
    A single section over the budget is split at paragraphs."""
    if count(text) <= budget:
        return [text]
    sections = [s for s in re.split(r"\n(?=#{1,6} )", text) if s.strip()]
    pieces = []
    for section in sections:
        if count(section) <= budget:
            pieces.append(section)
        else:
            pieces.extend(p for p in section.split("\n\n") if p.strip())
    parts: list[str] = []
    for piece in pieces:
        if parts and count(parts[-1] + "\n\n" + piece) <= budget:
            parts[-1] += "\n\n" + piece
        else:
            parts.append(piece)
    return parts


def load_documents(folder: Path, budget: int, count: Callable[[str], int]) -> tuple[list[Document], list[str]]:
    """The readable pages of FOLDER, each whole or in parts that fit the budget, and one line for each page that
    could not be read (the others go on)."""
    documents, unreadable = [], []
    for path in page_files(folder):
        try:
            text = read_document(path)
        except InputError as e:
            unreadable.append(e.message)
            continue
        parts = split_by_headings(text, budget, count)
        name = path.relative_to(folder).as_posix()
        documents += [Document(name if len(parts) == 1 else f"{name}#part{i}", part)
                      for i, part in enumerate(parts, start=1)]
    if not documents:
        raise InputError(f"{folder}: none of its {len(unreadable)} page(s) could be read ({unreadable[0]})")
    return documents, unreadable


def parse_questions(completion: str, limit: int) -> list[str]:
    """Questions from a continuation of "Questions:\\n1.": numbered items, repeats removed."""
    items = [" ".join(p.split()) for p in re.split(r"\n\s*\d+\s?[.)]\s*", "\n1. " + completion.strip())]
    return list(dict.fromkeys(q for q in items if len(q.split()) >= 3))[:limit]


def run(backend: Backend, docs: Path, config: FromDocsConfig, out: Outputs, force: bool = False,
        progress: Callable[[int, int], None] | None = None) -> StepResult:
    """The from-docs stage: closed_qa records whose context is the document into out["records.jsonl"]; empty and
    ungrounded answers are dropped with why. Resumes after a kill."""
    ledger = out.start(config, [docs])
    documents, unreadable = load_documents(docs, config.max_doc_tokens, _token_counter(backend))
    key = fingerprint(config=config, docs=Path(docs), backend=backend.backend, model=backend.name)
    output = ResumableOutput(out, key, ledger, force)
    usage = Counter(output.state.get("usage", {}))
    last_asked = None  # the generator's last completion, shown when it gave nothing usable
    for index in range(output.state.get("next", 0), len(documents)):
        document = documents[index]
        params = config.question_sampling.model_copy(update={"seed": config.question_sampling.seed + index})
        [asked] = backend.complete([doc_questions_prompt(document.text, config.num)], params)
        last_asked = asked.text
        questions = parse_questions(asked.text, config.num)
        answers = backend.complete([format_prompt(q, document.text) for q in questions], config.answer_sampling)
        kept = []
        for question, answer in zip(questions, answers):
            score = round(grounding(answer.text, document.text), 4)
            detail = {"backend": backend.backend, "model": backend.name, "document": document.name,
                      "template": DOC_QUESTIONS_TEMPLATE_ID, "answer_template": ANSWER_TEMPLATE_ID,
                      "params": params.model_dump(mode="json"), "grounding": score}
            record = Record(question, document.text, answer.text.strip(), "closed_qa", "generated",
                            meta={"document": document.name, "grounding": score, "model": backend.name},
                            lineage=[{"stage": "from-docs", "action": "create", "reason": None, "detail": detail,
                                      "run": None}])
            if answer.controls_removed:
                record = ledger.edit(record, "control characters removed", {"count": answer.controls_removed})
            if answer.error:
                ledger.drop(record, NOT_ANSWERED, {"error": answer.error})
            elif not answer.text.strip():
                ledger.drop(record, "empty answer")
            elif score < config.grounding:
                ledger.drop(record, f"not grounded (< {config.grounding})", {"grounding": score})
            else:
                kept.append(ledger.keep(record, {"grounding": score}))
        output.append(kept, next=index + 1, usage=take_usage(usage, backend))
        if progress:
            progress(index + 1, len(documents))
    result = output.finish(usage, [], resumed=output.resumed, documents=len(documents),
                           **({"unreadable_pages": unreadable} if unreadable else {}))
    if not result.counts["kept"] and not result.counts["rejected"] and not out.allow_empty:
        raise NothingGenerated(
            f"{docs}: the generator ({backend.name}) asked no question that could be read of {len(documents)} "
            f"page(s): {usage.get('completion_tokens', 0):,} completion tokens in all, for "
            f"{usage.get('prompt_tokens', 0):,} prompt tokens",
            hint=(f"its last completion was {last_asked[:200]!r}; " if last_asked is not None else "")
            + "a generator must write a numbered list of questions: a tiny one must have read these pages "
            "(`workbench init --tiny` trains it on them), a real one may need a larger max_new_tokens")
    return result


def _token_counter(backend: Backend) -> Callable[[str], int]:
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return lambda text: len(text.split()) * 4 // 3  # ~1.3 tokens per English word for BPE vocabularies
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])

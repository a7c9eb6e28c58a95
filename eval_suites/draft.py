"""A suite drafted from a university's own pages: for each page, the questions a prospective student asks that the
page answers (the reference is the page's own sentence or "Label: value" line, `workbench.core.teaching.
page_questions`), and unanswerable ones — a fact another page gives, asked of a page that lacks it, whose right
answer is to say the page does not tell. A draft is a start for people to check (accept, correct the reference, or
drop a question), never a benchmark as it comes.

A draft asks about half of what each page answers, alternating from page to page, so that every kind of question
(the fee, the deadline, ...) is asked of some pages in the suite and left for training on the others: a model is
then measured on finding a fact it was not shown on that page.

In a recipe the draft is reviewed in Argilla as its own dataset (`draft_records`, then `annotation.review.review`
with `annotation.questions.SUITE_QUESTIONS`), and the reviewed records become the suite (`reviewed_suite`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from annotation.questions import ON_THE_PAGE, PAGE_ANSWERS
from eval_suites.metrics import METRICS
from eval_suites.registry import load_suite
from workbench.core.errors import InputError
from workbench.core.io import atomic_write_text, load_records
from workbench.core.pages import read_pages
from workbench.core.records import Record
from workbench.core.runs import Outputs, StepResult
from workbench.core.teaching import page_questions

NOT_ON_THE_PAGE = "The page does not say."  # the reference of an unanswerable item (abstaining is right)
NOT_ON_THE_PAGE_TOO = "This cannot be answered from the page."
UNANSWERABLE_PER_PAGE = 2  # about one in four items: enough for abstain_recall to mean something


@dataclass
class DraftedSuite:
    folder: Path
    pages: int
    answerable: int
    unanswerable: int
    unreadable: list[str]

    def summary_lines(self) -> list[str]:
        return [f"Drafted {self.answerable + self.unanswerable} questions from {self.pages} page(s) in {self.folder}: "
                f"{self.answerable} answered by their page (about half of what each page answers: the other half "
                f"is left for training), {self.unanswerable} that their page cannot answer",
                *(f"Left out (cannot be read): {line}" for line in self.unreadable),
                f"Check {self.folder / 'items.jsonl'} before trusting it (a draft: correct the references, drop the "
                f"bad questions), then evaluate on it: workbench init DIR --pages PAGES --suite {self.folder}"]


def draft_items(pages) -> list[dict]:
    """The suite's items for these pages, in page order: each page's answerable questions, then its unanswerable
    ones (a question another page answers, asked of this page, which has nothing on it)."""
    asked = {page.path: dict(page_questions(page)) for page in pages}
    items = []
    for index, page in enumerate(pages):
        own = asked[page.path]
        for n, (question, answer) in enumerate(own.items(), start=1):
            if (index + n) % 2:
                continue  # left for training (see the module's note)
            items.append({"id": f"{page.slug}-{n}", "question": question, "context": page.text,
                          "references": [answer], "answerable": True, "page": page.path.name})
        topics = [q.replace(other.name, page.name) for other in pages if other is not page
                  for q in asked[other.path]]
        missing = [q for q in dict.fromkeys(topics) if q not in own]
        for n, question in enumerate(missing[:UNANSWERABLE_PER_PAGE], start=1):
            items.append({"id": f"{page.slug}-none-{n}", "question": question, "context": page.text,
                          "references": [NOT_ON_THE_PAGE, NOT_ON_THE_PAGE_TOO], "answerable": False,
                          "page": page.path.name})
    return items


def draft_suite(pages_folder: str | Path, out: str | Path, *, name: str | None = None,
                force: bool = False) -> DraftedSuite:
    """Write OUT/suite.yaml and OUT/items.jsonl drafted from the pages; an existing suite is never written over
    unless `force`. The written suite is loaded back as `eval run` loads it."""
    out = Path(out)
    if Path(pages_folder).resolve() in (out.resolve(), *out.resolve().parents):
        raise InputError(f"{out}: is the pages folder (or inside it): the suite would be written among the pages",
                         hint="write the suite to a folder of its own")
    if (out / "items.jsonl").exists() and not force:
        raise InputError(f"{out}: a suite is already there", hint="pass --force to write over it")
    pages, unreadable = read_pages(pages_folder)
    items = draft_items(pages)
    if not items:
        raise InputError(f"{pages_folder}: no question could be drafted from its pages (no facts or sentences)")
    description = f"Questions about the pages in {Path(pages_folder).resolve()}, drafted by `workbench eval suite " \
                  "draft`: check them before trusting the scores"
    write_suite(out, name or out.resolve().name, description, items)
    answerable = sum(item["answerable"] for item in items)
    return DraftedSuite(out, len(pages), answerable, len(items) - answerable, unreadable)


def write_suite(out: Path, name: str, description: str, items: list[dict]) -> None:
    """OUT/suite.yaml and OUT/items.jsonl (atomically), loaded back as `eval run` loads them: a suite it accepts, or
    this names what is wrong."""
    config = {"name": name, "description": description, "task": "qa", "prompt": {"system": "advisor"},
              "headline": "f1", "metrics": [m for m in METRICS if "qa" in METRICS[m].tasks]}  # the registry's order
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    load_suite(str(out))


# --- the draft reviewed in Argilla -------------------------------------------------------------------------------

def draft_records(pages) -> list[Record]:
    """The drafted items as records to review: the question as the instruction, the page as the context, the
    reference as the response; `meta` keeps the item's id, page and whether the draft found the answer (pre-selected
    for the reviewers, `annotation.mapping.suggestions_of`)."""
    return [Record(item["question"], item["context"], item["references"][0], "closed_qa", source="suite-draft",
                   meta={"suite_item": True, "item_id": item["id"], "answerable": item["answerable"],
                         "page": item["page"]})
            for item in draft_items(pages)]


class SuiteFromReviewConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the suite's name, as the report shows it


def _on_the_page(record: Record) -> bool:
    """The reviewers' answer to "does the page answer it?" (the draft's guess where they gave none)."""
    for event in reversed(record.lineage):
        answers = (event.get("detail") or {}).get("answers") if isinstance(event.get("detail"), dict) else None
        if answers and ON_THE_PAGE in answers:
            return answers[ON_THE_PAGE] == PAGE_ANSWERS[0]
    return bool(record.meta.get("answerable"))


def reviewed_suite(reviewed: Path, config: SuiteFromReviewConfig, out: Outputs) -> StepResult:
    """The suite (out["suite.yaml"], out["items.jsonl"]) from the reviewed drafts: the question and reference as the
    reviewers left them; a question they said the page does not answer becomes an unanswerable item. A question
    said to be answered whose reference is still the draft's "not on the page" has nothing to score against: it is
    left out through the ledger (correct its reference to keep it)."""
    ledger = out.start(config, [reviewed])
    records = load_records(reviewed, [])
    items = []
    for record in records:
        answerable = _on_the_page(record)
        if answerable and record.response.strip() in (NOT_ON_THE_PAGE, NOT_ON_THE_PAGE_TOO, ""):
            ledger.drop(record, "said to be answered by the page, but its reference says it is not",
                        {"question": record.instruction})
            continue
        items.append({"id": record.meta.get("item_id") or record.id, "question": record.instruction,
                      "context": record.context,
                      "references": [record.response] if answerable else [NOT_ON_THE_PAGE, NOT_ON_THE_PAGE_TOO],
                      "answerable": answerable, **({"page": record.meta["page"]} if "page" in record.meta else {})})
    if not items:
        raise InputError(f"{reviewed}: the reviewers kept no question, so there is no suite to evaluate on",
                         hint="review the suite dataset again, keeping the good questions")
    folder = out["suite.yaml"].parent
    out["items.jsonl"]  # noqa: B018 -- named, so that the manifest lists it
    write_suite(folder, config.name, f"Questions about the recipe's pages, drafted and reviewed in Argilla "
                                     f"({len(items)} kept of {len(records)} reviewed)", items)
    answerable = sum(item["answerable"] for item in items)
    return out.finish(ledger, {"in": len(records), "out": len(items), "answerable": answerable,
                               "unanswerable": len(items) - answerable})

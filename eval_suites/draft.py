"""A suite drafted from a university's own pages: for each page, the questions a prospective student asks that the
page answers (the reference is the page's own sentence or "Label: value" line, `workbench.core.teaching.
page_questions`), and unanswerable ones — a fact another page gives, asked of a page that lacks it, whose right
answer is to say the page does not tell. A draft is a start for people to check (accept, correct the reference, or
drop a question), never a benchmark as it comes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from eval_suites.metrics import METRICS
from eval_suites.registry import load_suite
from workbench.core.errors import InputError
from workbench.core.io import atomic_write_text
from workbench.core.pages import read_pages
from workbench.core.teaching import page_questions

NOT_ON_THE_PAGE = "The page does not say."  # the reference of an unanswerable item (abstaining is right)
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
                f"{self.answerable} answered by their page, {self.unanswerable} that their page cannot answer",
                *(f"Left out (cannot be read): {line}" for line in self.unreadable),
                f"Check {self.folder / 'items.jsonl'} before trusting it (a draft: correct the references, drop the "
                f"bad questions), then evaluate on it: workbench init DIR --pages PAGES --suite {self.folder}"]


def draft_items(pages) -> list[dict]:
    """The suite's items for these pages, in page order: each page's answerable questions, then its unanswerable
    ones (a question another page answers, asked of this page, which has nothing on it)."""
    asked = {page.path: dict(page_questions(page)) for page in pages}
    items = []
    for page in pages:
        own = asked[page.path]
        for n, (question, answer) in enumerate(own.items(), start=1):
            items.append({"id": f"{page.slug}-{n}", "question": question, "context": page.text,
                          "references": [answer], "answerable": True, "page": page.path.name})
        topics = [q.replace(other.name, page.name) for other in pages if other is not page
                  for q in asked[other.path]]
        missing = [q for q in dict.fromkeys(topics) if q not in own]
        for n, question in enumerate(missing[:UNANSWERABLE_PER_PAGE], start=1):
            items.append({"id": f"{page.slug}-none-{n}", "question": question, "context": page.text,
                          "references": [NOT_ON_THE_PAGE], "answerable": False, "page": page.path.name})
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
    name = name or out.resolve().name
    config = {"name": name, "description": f"Questions about the pages in {Path(pages_folder).resolve()}, drafted "
                                           "by `workbench eval suite draft`: check them before trusting the scores",
              "task": "qa", "prompt": {"system": "advisor"}, "headline": "f1",
              "metrics": [m for m in METRICS if "qa" in METRICS[m].tasks]}  # in the registry's order
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    load_suite(str(out))  # the draft is a suite `eval run` accepts, or this names what is wrong
    answerable = sum(item["answerable"] for item in items)
    return DraftedSuite(out, len(pages), answerable, len(items) - answerable, unreadable)

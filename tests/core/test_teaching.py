"""What the demo's tiny models are taught: catalog questions read off each page, plain text for the base."""

from eval_suites.registry import find_suite
from pipelines.contamination import ContaminationConfig, check, load_eval_items
from workbench.core.catalog import load_catalog
from workbench.core.records import Record
from workbench.core.teaching import base_texts, catalog_questions
from workbench.core.text import grounding


def test_catalog_questions_cover_every_page_and_are_answered_from_it():
    for programme in load_catalog():
        pairs = catalog_questions(programme)
        assert len(pairs) >= 20, programme.slug
        assert len({q for q, _ in pairs}) == len(pairs)  # no question asked twice with two answers
        for question, answer in pairs:
            assert programme.title in question and answer.strip()
            assert grounding(answer, programme.text) >= 0.5, (question, answer)


def test_catalog_questions_do_not_contaminate_the_eval_suites():
    # The suites are written separately; what the tiny models read must not contain their items.
    records = [Record(q, p.text, a, "closed_qa") for p in load_catalog() for q, a in catalog_questions(p)]
    items = [item for suite in ("course_advisor", "closed_qa", "brainstorming")
             for item in load_eval_items(find_suite(suite), [])]
    assert check(records, items, ContaminationConfig()) == []


def test_the_base_reads_no_prompt_format():
    texts = base_texts()
    assert not any("###" in text or "Instruction:" in text or "Task 1" in text for text in texts)
    passages = sum(text.startswith("Question: ") for text in texts)
    assert passages == sum(len(catalog_questions(p)) for p in load_catalog())

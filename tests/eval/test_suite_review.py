"""A suite drafted from a university's pages, reviewed in Argilla as its own dataset, pulled as a suite `eval run`
accepts; and its questions kept out of everything the models are trained on."""

import json
from pathlib import Path

import pytest

from annotation.demo_reviewer import check_question
from annotation.questions import ON_THE_PAGE, SUITE_QUESTIONS
from eval_suites.draft import NOT_ON_THE_PAGE, SuiteFromReviewConfig, draft_items, draft_records, reviewed_suite
from eval_suites.registry import load_suite
from pipelines import holdout
from pipelines.contamination import ContaminationConfig, check, load_eval_items
from workbench.core.io import load_records, write_records
from workbench.core.pages import read_pages
from workbench.core.records import Record
from workbench.core.runs import Outputs
from workbench.core.teaching import base_texts, domain_texts, page_questions, without
from workbench.steps import asks_one_of

PAGES = Path(__file__).parents[1] / "fixtures" / "pages"
PAGE = "# Public Health (MSc)\n\n- Tuition fee: 1,450 EUR per semester.\n- Start: October.\n"


def test_the_demo_reviewers_read_the_page_to_check_a_drafted_question():
    answered = {"instruction": "How much does Public Health (MSc) cost?", "context": PAGE,
                "response": "Tuition fee: 1,450 EUR per semester."}
    strict = check_question("strict", answered, {})
    # strict shortens a "Label: value" reference to its value: the answer a student's is scored against
    assert strict == {"decision": "keep", ON_THE_PAGE: "answered", "corrected_response": "1,450 EUR per semester"}
    assert check_question("lenient", answered, {}) == {"decision": "keep", ON_THE_PAGE: "answered"}
    missing = {**answered, "instruction": "When must I apply for Public Health (MSc)?", "response": NOT_ON_THE_PAGE}
    assert {check_question(style, missing, {})[ON_THE_PAGE] for style in ("strict", "lenient", "grounded")} == \
        {"not on the page"}
    assert check_question("grounded", {**answered, "instruction": "fees"}, {})["decision"] == "discard"


def _reviewed(record: Record, answers: dict, **changes) -> Record:
    return record.with_event("suite-review", "edit" if changes else "keep", "reviewed",
                             {"answers": answers}, **changes)


def test_the_reviewed_drafts_become_a_suite_with_the_reviewers_answers(tmp_path):
    fee, start, none = draft_records([page for page in read_pages(PAGES)[0] if page.path.suffix == ".html"])[:3]
    assert fee.meta["answerable"] and fee.meta["suite_item"]
    reviewed = [
        _reviewed(fee, {ON_THE_PAGE: "answered"}, response="1,450 EUR per semester"),  # a corrected reference
        _reviewed(start, {ON_THE_PAGE: "not on the page"}),  # the page does not answer it after all
        _reviewed(Record("Is there a March intake for Public Health (MSc)?", PAGE, NOT_ON_THE_PAGE, "closed_qa",
                         meta={"suite_item": True, "answerable": False, "item_id": "x-none-1"}),
                  {ON_THE_PAGE: "answered"}),  # said answered, but nobody gave the reference: left out, with why
    ]
    write_records(tmp_path / "reviewed.jsonl", reviewed)
    out = Outputs.folder(tmp_path / "suite", "suite")
    result = reviewed_suite(tmp_path / "reviewed.jsonl", SuiteFromReviewConfig(name="riverside"), out)
    assert result.counts == {"in": 3, "out": 2, "answerable": 1, "unanswerable": 1}
    items = [json.loads(line) for line in (tmp_path / "suite" / "items.jsonl").read_text().splitlines()]
    assert items[0]["references"] == ["1,450 EUR per semester"] and items[0]["answerable"]
    assert items[1]["answerable"] is False and items[1]["references"][0] == NOT_ON_THE_PAGE
    dropped = load_records(tmp_path / "suite" / "dropped.jsonl", [])
    assert [r.lineage[-1]["reason"] for r in dropped] == \
        ["said to be answered by the page, but its reference says it is not"]
    suite = load_suite(str(tmp_path / "suite"))
    assert suite.config.name == "riverside" and len(suite.items) == 2


def test_holdout_drops_the_suites_questions_and_what_shares_text_with_them(tmp_path):
    items = draft_items(read_pages(PAGES)[0])
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps(item) + "\n" for item in items))
    asked = items[0]["question"]
    curated = [Record(asked, "", "It is in the page.", "closed_qa"),  # the suite's question, word for word
               Record(asked.lower().rstrip("?") + " exactly?", "", "Read the page.", "closed_qa"),  # a near-copy
               Record("Name three habits of a good student.", "", "Sleep, read and ask.", "brainstorming")]
    long_reference = next(i for i in items if len(i["references"][0].split()) >= 14)
    curated.append(Record("Tell me something about the programme.", "", long_reference["references"][0], "open_qa"))
    write_records(tmp_path / "curated.jsonl", curated)
    result = holdout.run(tmp_path / "curated.jsonl", [suite], ContaminationConfig(),
                         Outputs.folder(tmp_path / "h", "h"))
    kept = load_records(tmp_path / "h" / "records.jsonl", [])
    assert [r.instruction for r in kept] == ["Name three habits of a good student."]
    assert result.manifest["ledger"] == {"drop: asks a suite question": 2, "drop: shares text with a suite item": 1}
    # what is left passes the contamination gate
    assert check(kept, load_eval_items(suite, []), ContaminationConfig()) == []


def test_no_suite_question_reaches_the_tiny_pairs_lessons(tmp_path):
    """The tiny pair reads the pages' questions without the suite's: a drafted suite keeps half of each page's
    questions, and the other half is what the pair is taught."""
    pages = read_pages(PAGES)[0]
    suite = tmp_path / "drafted.jsonl"
    write_records(suite, draft_records(pages))
    held_out = asks_one_of([suite])
    taught = without(page_questions, held_out)
    texts = base_texts(programmes=pages, questions=taught) + domain_texts(programmes=pages, questions=taught,
                                                                             doc_questions=8, doc_listings=6)
    drafted = [r.instruction for r in load_records(suite, []) if r.meta["answerable"]]
    assert drafted and not [q for q in drafted if any(q in text for text in texts)]
    assert all(taught(page) for page in pages)  # every page still has questions to teach
    assert sum(len(taught(p)) for p in pages) + len(drafted) == sum(len(page_questions(p)) for p in pages)


@pytest.mark.server
def test_a_drafted_suite_reviewed_by_the_demo_reviewers_becomes_a_suite_that_eval_accepts(tmp_path, invoke,
                                                                                         score_references):
    from annotation import client as api
    from annotation import server
    from annotation.mapping import SUITE_GUIDELINES
    from annotation.review import ReviewConfig, review

    drafted = tmp_path / "drafted.jsonl"
    write_records(drafted, draft_records(read_pages(PAGES)[0]))
    data_dir = tmp_path / "argilla"
    config = ReviewConfig(dataset="riverside-suite", min_submitted=2)
    result = review(drafted, config, Outputs.folder(tmp_path / "suite-review", "suite-review"),
                    questions=SUITE_QUESTIONS, guidelines=SUITE_GUIDELINES, data_dir=data_dir)
    assert result.counts["pushed"] == 24 and result.counts["pending"] == 0
    served = server.serve(data_dir, port=server.free_port())
    try:
        dataset = api.get_dataset(api.connect(served.api_url, served.credentials.api_key), "riverside-suite")
        assert [q.name for q in dataset.settings.questions] == [q.name for q in SUITE_QUESTIONS]
        assert dataset.settings.guidelines.startswith("Each record is one **question**")
        # `annotate pull` of a suite dataset reads its own questions: whether the page answers each one comes back
        pulled = invoke("annotate", "pull", "--dataset", "riverside-suite", "-o", tmp_path / "pulled.jsonl",
                        "--data-dir", data_dir)
        assert pulled.exit_code == 0, pulled.output
        assert {r.lineage[-1]["detail"]["answers"][ON_THE_PAGE] for r in load_records(tmp_path / "pulled.jsonl", [])
                } == {"answered", "not on the page"}
    finally:
        server.stop(data_dir)
    reviewed = load_records(tmp_path / "suite-review" / "records.jsonl", [])
    shortened = [r for r in reviewed if r.lineage[-1]["action"] == "edit"]
    assert shortened and all(":" not in r.response for r in shortened)  # strict's "Label: value" -> value won
    out = Outputs.folder(tmp_path / "suite", "suite")
    made = reviewed_suite(tmp_path / "suite-review" / "records.jsonl", SuiteFromReviewConfig(name="riverside"), out)
    assert made.counts["answerable"] >= 10 and made.counts["unanswerable"] >= 5
    metrics = score_references(tmp_path / "suite")
    assert metrics["f1"]["value"] == 1.0 and metrics["abstain_recall"]["value"] == 1.0

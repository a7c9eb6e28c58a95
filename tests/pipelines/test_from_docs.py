from pathlib import Path

from pipelines.from_docs import FromDocsConfig, load_documents, parse_questions, read_document, run, split_by_headings
from workbench.core.catalog import CATALOG_DIR
from workbench.core.io import load_records
from workbench.core.models import get_model
from workbench.core.runs import Outputs
from workbench.core.text import content_words, grounding


def test_read_markdown_drops_the_yaml_header(tmp_path):
    text = read_document(CATALOG_DIR / "business-information-systems-msc.md")
    assert text.startswith("# Business Information Systems (MSc)") and "slug:" not in text


def test_read_html_as_text():
    """A page saved from a website: its main text as Markdown, headings kept, the site's chrome left out."""
    text = read_document(Path(__file__).parents[1] / "fixtures" / "pages" / "public-health-msc.html")
    assert text.startswith("# Public Health (MSc)") and "## Entry requirements" in text
    assert "cookies" not in text and "analytics" not in text and "All rights reserved" not in text


def test_long_documents_are_split_at_headings():
    text = "# Title\nintro words here\n## A\n" + "alpha " * 30 + "\n## B\n" + "beta " * 30
    parts = split_by_headings(text, 40, lambda t: len(t.split()))
    # Greedy packing: the title and section A fit together, B does not fit beside them.
    assert len(parts) == 2 and parts[0].startswith("# Title") and "## A" in parts[0] and parts[1].startswith("## B")
    assert split_by_headings("short", 40, lambda t: len(t.split())) == ["short"]


def test_load_documents_names_the_parts(tmp_path):
    (tmp_path / "a.md").write_text("# A\n" + "word " * 50 + "\n## B\n" + "more " * 50)
    (tmp_path / "b.txt").write_text("small text")
    (tmp_path / "skip.csv").write_text("x,y")
    (tmp_path / "c.html").write_bytes(b"\xff\xfe not utf-8")
    documents, unreadable = load_documents(tmp_path, 60, lambda t: len(t.split()))
    assert [d.name for d in documents] == ["a.md#part1", "a.md#part2", "b.txt"]
    assert unreadable == [f"{tmp_path / 'c.html'}: not UTF-8 text (byte 0); save it as UTF-8"]  # the others go on


def test_parse_questions():
    completion = " What does the MSc cost?\n2. Is programming required?\n3) Is programming required?\n4. Hi\n5."
    assert parse_questions(completion, 10) == ["What does the MSc cost?", "Is programming required?"]
    assert parse_questions(completion, 1) == ["What does the MSc cost?"]


def test_grounding_counts_content_words_found_in_the_context():
    context = "The semester fee is 980 EUR for home students."
    assert grounding("The fee is 980 EUR.", context) == 1.0
    assert grounding("The fee is 980 EUR, paid by dragons.", context) == 0.6  # fee 980 eur / paid dragons
    assert content_words("It is the fee") == ["fee"]
    assert grounding("Yes.", context) == 1.0


def test_run_keeps_grounded_answers_as_closed_qa(tiny_generator, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("business-information-systems-msc.md", "nursing-bsc.md"):
        (docs / name).write_text((CATALOG_DIR / name).read_text())
    model = get_model(str(tiny_generator))
    config = FromDocsConfig(num=3, grounding=0.5)
    result = run(model, docs, config, Outputs.beside(tmp_path / "qa.jsonl", "from-docs"))
    kept, rejected = load_records(tmp_path / "qa.jsonl", []), load_records(tmp_path / "qa.rejected.jsonl", [])
    assert result.counts["kept"] == len(kept) and result.counts["rejected"] == len(rejected) and kept + rejected
    for record in kept:
        assert record.category == "closed_qa" and record.meta["grounding"] >= 0.5
        assert record.context == read_document(docs / record.meta["document"])
    for record in rejected:
        assert record.lineage[-1]["reason"] in ("empty answer", "not grounded (< 0.5)")
    assert result.counts["requests"] >= 2 and sum(result.reasons.values()) == result.counts["rejected"]

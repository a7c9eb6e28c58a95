"""A university's pages as people have them (tests/fixtures/pages): HTML saved from a website with its navigation,
cookie banner, scripts and footer; a PDF printed by Chromium from a prospectus page (a real text layer); Markdown
with and without a YAML header; plain text; a PDF without a text layer. Each gives the text a person reads."""

import shutil
from pathlib import Path

import pytest

from workbench.core.errors import InputError
from workbench.core.pages import read_page, read_pages

PAGES = Path(__file__).parent.parent / "fixtures" / "pages"


def test_html_gives_the_main_text_without_navigation_cookies_scripts_or_footer():
    page = read_page(PAGES / "public-health-msc.html")
    assert page.title == "Public Health (MSc)"  # the <title> without the site's " | Study | Riverside University"
    for fact in ("Tuition fee: 1,450 EUR per semester", "Programming skills are not required", "## Entry requirements",
                 "Start: September only"):
        assert fact in page.text
    for boilerplate in ("cookies", "Accept all", "Student portal login", "Research", "All rights reserved",
                        "Privacy policy", "dataLayer", "localStorage", "You may also like", "Home"):
        assert boilerplate not in page.text, boilerplate


def test_a_pdf_printed_by_a_browser_gives_its_text_layer_and_title():
    page = read_page(PAGES / "prospectus.pdf")
    assert page.title == "Prospectus 2027: Data Science (MSc)"
    assert "Tuition: 2,900 EUR per semester for international students" in " ".join(page.text.split())
    assert "Programming in Python is required" in page.text


def test_a_pdf_without_a_text_layer_says_so():
    with pytest.raises(InputError, match=r"scanned-brochure.pdf: no text layer in its 1 page\(s\)"):
        read_page(PAGES / "scanned-brochure.pdf")


def test_markdown_with_and_without_a_header_and_text():
    with_header = read_page(PAGES / "business-analytics-ma.md")
    assert with_header.title == "Business Analytics" and with_header.name == "Business Analytics (MA)"
    assert with_header.header["programming_required"] is False and with_header.text.startswith("# Business")
    assert "---" not in with_header.text
    plain = read_page(PAGES / "nursing-bsc.md")
    assert plain.title == "Nursing (BSc)" and plain.header == {} and plain.slug == "nursing-bsc"
    text = read_page(PAGES / "admissions.txt")
    assert text.title == "Admissions office" and "15 June" in text.text


def test_a_folder_of_pages_reads_every_kind_and_names_the_page_it_cannot_read(tmp_path):
    pages, unreadable = read_pages(PAGES)
    assert sorted(p.path.name for p in pages) == ["admissions.txt", "business-analytics-ma.md", "nursing-bsc.md",
                                                  "prospectus.pdf", "public-health-msc.html"]
    assert unreadable == [f"{PAGES / 'scanned-brochure.pdf'}: no text layer in its 1 page(s) (a scan or images "
                          "only?): run OCR on it first, or save the page as text"]


def test_one_page_is_a_catalog_and_bad_pages_are_named_one_line_each(tmp_path):
    shutil.copy(PAGES / "nursing-bsc.md", tmp_path)
    assert [p.title for p in read_pages(tmp_path)[0]] == ["Nursing (BSc)"]
    (tmp_path / "latin1.txt").write_bytes("Gebühren".encode("latin-1"))
    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    (tmp_path / "empty.html").write_text("<html><head><title>Saved too early</title><script>load()</script></head>"
                                         "<body></body></html>")
    (tmp_path / "notes.csv").write_text("not,a,page\n")  # not a page: not read at all
    pages, unreadable = read_pages(tmp_path)
    assert [p.title for p in pages] == ["Nursing (BSc)"]
    assert [line.split(": ", 1)[0].rsplit("/", 1)[-1] for line in unreadable] == [
        "broken.md:2", "empty.html", "latin1.txt"]
    assert "invalid YAML header" in unreadable[0] and "main text is empty" in unreadable[1]
    assert "not UTF-8 text (byte 3)" in unreadable[2]


def test_a_folder_without_readable_pages_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no pages"):
        read_pages(tmp_path)
    (tmp_path / "scan.pdf").write_bytes((PAGES / "scanned-brochure.pdf").read_bytes())
    with pytest.raises(InputError, match="none of its 1 page"):
        read_pages(tmp_path)


def test_a_title_is_the_programme_as_a_person_names_it(tmp_path):
    """A site's name after a separator is left out, a title in capitals (a text file's first line) is put in title
    case, and the header's degree is added only to a title that names none."""
    (tmp_path / "a.md").write_text("# Architecture (BA) – Harbourview University\n\nSix semesters.\n")
    (tmp_path / "b.txt").write_text("MUSIC TECHNOLOGY AND SOUND (BA)\nHarbourview University\n\nThree years.\n")
    (tmp_path / "c.md").write_text("---\ntitle: Marine Biology (BSc)\ndegree: BSc (Hons)\n---\nThree years.\n")
    (tmp_path / "d.md").write_text("---\ntitle: Marine Biology\ndegree: BSc\n---\nThree years.\n")
    pages, _ = read_pages(tmp_path)
    assert [p.name for p in pages] == ["Architecture (BA)", "Music Technology and Sound (BA)", "Marine Biology (BSc)",
                                       "Marine Biology (BSc)"]

"""A university's pages as they come: Markdown (with or without a YAML header), plain text, HTML saved from a
website and PDF from a prospectus — any number, one page or a hundred.

- HTML: the main text only. trafilatura (a maintained extraction library) drops navigation, cookie banners,
  scripts, asides and footers, and keeps headings and lists as Markdown, so a page reads as a person reads it.
- PDF: the text layer (pypdf). A PDF without one (a scan, an image) is named as such, never read as empty text.
- Markdown: a YAML header is optional; its keys are kept (the bundled catalog's `programming_required`, `fees`, ...)
  and none is required.
- The title: the header's `title`, else the HTML `<title>` (site suffixes such as " | Study | Uni" removed) or the
  PDF's title, else the first heading or first line, else the file name.

A page that cannot be read is one line naming the file and why; the other pages go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.core.errors import InputError

PAGE_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
# "Public Health (MSc) | Study | Riverside University" -> "Public Health (MSc)": sites append their own name.
_TITLE_SEPARATORS = re.compile(r"\s+[|–—·»]\s+|\s+-\s+")
_SMALL_WORDS = {"a", "an", "and", "at", "for", "in", "of", "on", "or", "the", "to"}  # lower case inside a title


@dataclass(frozen=True)
class Page:
    title: str
    text: str  # what a person reads: Markdown for .md and HTML, the text layer of a PDF, the file for .txt
    path: Path
    header: dict[str, Any] = field(default_factory=dict)  # a Markdown page's YAML header (empty without one)

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def name(self) -> str:
        """The title, with the header's degree when it has one and the title names none: 'Data Science (MSc)'."""
        degree = self.header.get("degree")
        return f"{self.title} ({degree})" if degree and "(" not in self.title else self.title

    @property
    def slug(self) -> str:
        return str(self.header.get("slug") or self.path.stem)


def split_front_matter(raw: str) -> tuple[dict[str, Any] | None, str, int]:
    """A Markdown text's YAML header (None without one), its body, and the line the body starts on (1-based).
    An unclosed or unparsable header raises ValueError saying which line."""
    lines = raw.splitlines()
    if not lines or lines[0].strip() != "---":
        return None, raw, 1
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        raise ValueError("1: the YAML header is not closed with '---'")
    try:
        header = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ValueError(f"{(mark.line + 2) if mark else 1}: invalid YAML header "
                         f"({getattr(e, 'problem', None) or e})") from None
    if not isinstance(header, dict):
        raise ValueError("2: the YAML header is not a mapping of keys")
    return header, "\n".join(lines[end + 1:]), end + 2


def _first_heading(text: str) -> str | None:
    """The first line, without a Markdown heading's marks or a site name after a separator; a line in capitals (a
    text file's or a PDF's title) in title case, abbreviations in brackets kept: "MUSIC TECHNOLOGY (BA)" -> "Music
    Technology (BA)"."""
    for line in text.splitlines():
        line = _TITLE_SEPARATORS.split(line.strip().lstrip("#").strip())[0].strip()
        if line:
            if line.isupper() and len(line.split()) > 1:
                line = " ".join(word if word.startswith("(") else word.lower() if i and word.lower() in _SMALL_WORDS
                                else word.capitalize() for i, word in enumerate(line.split()))
            return line
    return None


def _site_title(title: str | None) -> str | None:
    if not title or not title.strip():
        return None
    return _TITLE_SEPARATORS.split(title.strip())[0].strip() or None


def read_html(raw: str) -> tuple[str, str | None]:
    """The main text of an HTML page as Markdown, and its title."""
    import trafilatura

    text = trafilatura.extract(raw, output_format="markdown", include_comments=False, include_tables=True) or ""
    metadata = trafilatura.extract_metadata(raw)
    return text.strip(), _site_title(metadata.title if metadata else None)


def read_pdf(path: Path) -> tuple[str, str | None]:
    """A PDF's text layer, page by page, and its title (metadata)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise ValueError("the PDF is encrypted (save it without a password)")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PdfReadError, OSError, KeyError, TypeError) as e:
        raise ValueError(f"not a readable PDF ({e})") from None
    if not reader.pages:
        raise ValueError("the PDF has no pages")
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise ValueError(f"no text layer in its {len(reader.pages)} page(s) (a scan or images only?): "
                         "run OCR on it first, or save the page as text")
    return text, _site_title(title)


def read_page(path: str | Path) -> Page:
    """One page of any supported kind; an unreadable page raises InputError naming the file (and line) and why."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PAGE_SUFFIXES:
        raise InputError(f"{path}: not a page this reads ({', '.join(PAGE_SUFFIXES)})")
    try:
        if suffix == ".pdf":
            text, title = read_pdf(path)
            header: dict[str, Any] = {}
        else:
            raw = path.read_bytes().decode("utf-8")
            if suffix in (".html", ".htm"):
                text, title = read_html(raw)
                header = {}
            else:
                found, body, _ = split_front_matter(raw) if suffix != ".txt" else (None, raw, 1)
                header, text = found or {}, body.strip()
                title = str(header["title"]) if header.get("title") else None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        where = f"{path}:{e}" if str(e)[:1].isdigit() else f"{path}: {e}"
        raise InputError(where) from None
    if not text.strip():
        raise InputError(f"{path}: no text" + (" (the page's main text is empty: only navigation, scripts or "
                                               "boilerplate?)" if suffix in (".html", ".htm") else ""))
    return Page(title=title or _first_heading(text) or path.stem.replace("-", " ").replace("_", " "),
                text=text, path=path, header=header)


def page_files(folder: str | Path) -> list[Path]:
    """The pages in a folder (and its subfolders), in name order; a missing folder or one without pages is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of pages")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: no pages ({', '.join(PAGE_SUFFIXES)})")
    return files


def read_pages(folder: str | Path) -> tuple[list[Page], list[str]]:
    """Every page in FOLDER that can be read, and one line ("FILE: why") for each that cannot: the others go on.
    At least one page must be readable."""
    pages, unreadable = [], []
    for path in page_files(folder):
        try:
            pages.append(read_page(path))
        except InputError as e:
            unreadable.append(e.message)
    if not pages:
        raise InputError(f"{folder}: none of its {len(unreadable)} page(s) could be read ({unreadable[0]})")
    return pages, unreadable

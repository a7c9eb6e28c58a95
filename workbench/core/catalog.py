"""The bundled course catalog (a fictional university's programmes) and seed tasks.

Each programme is a Markdown file with a small YAML header; generation grounds questions in these
documents and the course-advisor suite asks about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.core.errors import InputError

DATA_DIR = Path(__file__).parents[1] / "data"  # workbench/data: package data beside the code
CATALOG_DIR = DATA_DIR / "catalog"
SEED_TASKS = DATA_DIR / "seed_tasks.jsonl"
REQUIRED_KEYS = ("slug", "title", "degree", "duration", "language", "start_dates", "fees",
                 "programming_required")


@dataclass(frozen=True)
class Programme:
    slug: str
    title: str
    degree: str
    header: dict[str, Any]  # everything in the YAML header
    body: str  # the Markdown after the header
    path: Path

    @property
    def name(self) -> str:
        """'Business Information Systems (MSc)'."""
        return f"{self.title} ({self.degree})"

    @property
    def text(self) -> str:
        """The document as a model sees it as context: the Markdown body, which starts with its title."""
        return self.body.strip()


def parse_programme(path: Path) -> Programme:
    """Read one programme file; a missing or bad header is an InputError naming the file and line."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise InputError(f"{path}:1: -: expected a YAML header starting with '---'")
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        raise InputError(f"{path}:1: -: the YAML header is not closed with '---'") from None
    try:
        header = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"{path}:{(mark.line + 2) if mark else 1}: -: invalid YAML header ({e})") from None
    missing = [k for k in REQUIRED_KEYS if k not in header]
    if missing:
        raise InputError(f"{path}:1: {missing[0]}: missing from the header (required: {', '.join(REQUIRED_KEYS)})")
    body = "\n".join(lines[end + 1:])
    if not body.strip():
        raise InputError(f"{path}:{end + 2}: -: the programme has no text after its header")
    return Programme(slug=str(header["slug"]), title=str(header["title"]), degree=str(header["degree"]),
                     header=header, body=body, path=path)


def load_catalog(directory: str | Path = CATALOG_DIR) -> list[Programme]:
    """All programmes in `directory` (*.md), sorted by file name."""
    directory = Path(directory)
    files = sorted(directory.glob("*.md"))
    if not files:
        raise InputError(f"{directory}: no programme files (*.md)")
    programmes = [parse_programme(f) for f in files]
    slugs = [p.slug for p in programmes]
    duplicated = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicated:
        raise InputError(f"{directory}: slug {duplicated[0]!r} is used by more than one programme")
    return programmes

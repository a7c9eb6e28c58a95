from collections import Counter

import pytest

from workbench.core.catalog import CATALOG_DIR, SEED_TASKS, load_catalog, parse_programme
from workbench.core.errors import InputError
from workbench.core.io import Problem, load_records
from workbench.core.records import CATEGORIES


def test_catalog_has_at_least_12_programmes_with_full_headers():
    programmes = load_catalog()
    assert len(programmes) >= 12
    for programme in programmes:
        for key in ("duration", "language", "start_dates", "fees", "programming_required"):
            assert programme.header[key] not in (None, "", []), (programme.slug, key)
        for section in ("## Admission requirements", "## Module strands", "## Career prospects"):
            assert section in programme.body, (programme.slug, section)
        assert "programming" in programme.body.lower()  # every programme says whether it is required


def test_business_information_systems_says_plainly_that_programming_is_not_required():
    bis = next(p for p in load_catalog() if p.slug == "business-information-systems-msc")
    assert bis.name == "Business Information Systems (MSc)"
    assert bis.header["programming_required"] is False
    assert "Programming knowledge is not required" in bis.text


def test_header_flag_agrees_with_the_text():
    for programme in load_catalog():
        says_required = "programming knowledge is required" in programme.text.lower()
        assert says_required == programme.header["programming_required"], programme.slug


def test_bad_programme_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("---\nslug: x\ntitle: X\n---\n# X\n")
    with pytest.raises(InputError, match=r"bad.md:1: degree: missing from the header"):
        parse_programme(bad)
    bad.write_text("# No header\n")
    with pytest.raises(InputError, match=r"bad.md:1: -: expected a YAML header"):
        parse_programme(bad)


def test_seed_tasks_cover_all_eight_categories_and_are_valid():
    problems: list[Problem] = []
    seeds = load_records(SEED_TASKS, problems)
    assert problems == []
    assert len(seeds) >= 60
    counts = Counter(s.category for s in seeds)
    assert set(counts) == set(CATEGORIES) and min(counts.values()) >= 5
    assert all(s.source == "seed" and isinstance(s.meta["is_classification"], bool) for s in seeds)
    assert all(s.meta["is_classification"] for s in seeds if s.category == "classification")
    assert all(s.context for s in seeds if s.category in ("closed_qa", "information_extraction", "summarization"))


def test_catalog_files_live_in_the_package():
    assert CATALOG_DIR.is_dir() and SEED_TASKS.is_file()

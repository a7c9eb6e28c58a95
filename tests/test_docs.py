"""The README and docs/ agree with the code: the README stays short and leads with the two commands, every link
and every path it names exists, "Where things live" names every module, and the numbers it states are the code's."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = sorted((ROOT / "docs").glob("*.md"))


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    assert len(README.splitlines()) <= 300
    first_block = README.split("```")[1]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make demo", "make test"]
    assert README.index("workbench run") < README.index("## The loop")  # the main job before the reference


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target}"
        if anchor and linked.suffix == ".md":
            titles = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
            anchors = {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}
            assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {linked.name}"


def test_where_things_live_names_every_module_and_only_modules_that_exist():
    table = section(README, "Where things live")
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines() if line.startswith("| `")}
    folders = {"workbench/core/": "workbench/core/", "pipelines/": "pipelines/",
               "pipelines/finetune/": "pipelines/finetune/", "annotation/": "annotation/",
               "eval_suites/": "eval_suites/", "workbench/": "workbench/", "workbench/cli/": "workbench/"}
    for folder, row in folders.items():
        for module in sorted((ROOT / folder).glob("*.py")):
            if module.stem in ("__init__", "__main__"):
                continue
            assert re.search(rf"\b{module.stem}\b", rows[row]), f"Where things live: {folder}{module.name} missing"
    for named in re.findall(r"`([\w/]+\.py)`", README):
        assert (ROOT / named).exists() or any(
            (ROOT / folder / named).exists() for folder in folders), f"README names {named}, which does not exist"


def test_the_numbers_the_docs_state_are_the_codes():
    from workbench.core.minhash import INDEX_MARGIN

    stages = (ROOT / "docs" / "stages.md").read_text(encoding="utf-8")
    assert f"indexed {INDEX_MARGIN} below the threshold" in stages
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    minutes = re.search(r"test-fast.*?under (\d+) minutes", makefile, re.S) or re.search(
        r"under (\d+) minutes", makefile)
    assert f"under {minutes.group(1)} minutes" in README


def test_the_python_api_section_names_functions_that_exist():
    import workbench

    api = section(README, "Python API")
    named = set(re.findall(r"workbench\.(\w+)\(", api)) | set(re.findall(r"^\| `(.+?)` \|", api, re.M))
    functions = {name.strip("` ") for group in named for name in group.split(",")}
    assert functions and functions <= set(workbench.__all__), functions - set(workbench.__all__)

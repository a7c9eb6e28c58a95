"""The bundled suites: sizes, the catalog-grounded advisor items, no contamination with the seeds; user suites."""

import json

import pytest

from eval_suites.registry import list_suites, load_suite
from workbench.core.catalog import load_catalog
from workbench.core.errors import ConfigError, InputError

FLAGSHIP = "Do I have to know programming to apply for the Business Information Systems course?"


def test_bundled_suites_have_the_promised_sizes():
    assert {"closed_qa", "brainstorming", "course_advisor"} <= set(list_suites())
    closed = load_suite("closed_qa")
    assert len(closed.items) >= 60 and sum(not i["answerable"] for i in closed.items) >= 15
    assert all(i["context"].strip() for i in closed.items)
    brainstorm = load_suite("brainstorming")
    assert len(brainstorm.items) >= 40
    for item in brainstorm.items:  # the requested count is the number word in the prompt
        words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
        assert f" {words[item['count']]} " in f" {item['prompt'].lower()} " and item["keywords"]
    advisor = load_suite("course_advisor")
    assert len(advisor.items) >= 80 and sum(not i["answerable"] for i in advisor.items) >= 10
    assert advisor.config.prompt.system == "advisor"


def test_catalog_paragraphs_are_not_hard_wrapped():
    """A paragraph or list item is one line, so a context shows as the page's paragraphs wherever it is displayed
    (the review UI, the report), not broken where an editor wrapped it."""
    import re

    for page in load_catalog():
        lines = page.text.splitlines()
        for before, line in zip(lines, lines[1:]):
            continuation = line.strip() and not re.match(r"(#|[-*+] |\d+\. |\|)", line)
            assert not (before.strip() and not before.startswith("#") and continuation), (page.slug, line)


def test_course_advisor_is_grounded_in_the_catalog():
    advisor = load_suite("course_advisor")
    pages = {p.slug: p for p in load_catalog()}
    for item in advisor.items:  # the context is the programme's page as bundled, word for word
        assert item["context"] == pages[item["programme"]].text, item["id"]
    [flagship] = [i for i in advisor.items if i["question"] == FLAGSHIP]
    assert flagship["answerable"] and pages[flagship["programme"]].header["programming_required"] is False
    assert any(r.lower().startswith("no") for r in flagship["references"])
    assert "Programming knowledge is not required" in flagship["context"]


@pytest.mark.parametrize("suite", ["closed_qa", "brainstorming", "course_advisor"])
def test_suites_do_not_near_duplicate_the_seed_tasks(suite, tmp_path, invoke):
    from eval_suites.registry import SUITES_DIR
    from workbench.core.catalog import SEED_TASKS

    report = tmp_path / "contamination.json"
    result = invoke("contamination", SEED_TASKS, "--eval", SUITES_DIR / suite, "--threshold", "0.5",
                    "--fail-on-contamination", "--report", report)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["contaminated"] == []


def write_suite(folder, items, metrics=("em", "f1"), task="qa"):
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(f"name: {folder.name}\ndescription: mine\ntask: {task}\n"
                                       f"metrics: [{', '.join(metrics)}]\n")
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return folder


def test_a_users_suites_dir_adds_and_overrides(tmp_path):
    mine = tmp_path / "suites"
    write_suite(mine / "capitals", [{"id": "fr", "question": "Capital of France?", "references": ["Paris"]}])
    write_suite(mine / "closed_qa", [{"id": "x", "question": "Q?", "references": ["A"]}])
    assert {"capitals", "brainstorming"} <= set(list_suites([mine]))
    assert len(load_suite("closed_qa", [mine]).items) == 1  # the user's folder wins
    assert load_suite(str(mine / "capitals")).name == "capitals"  # by path too
    with pytest.raises(InputError, match="did you mean 'capitals'"):
        load_suite("capitols", [mine])


def test_bad_items_name_file_line_and_field(tmp_path):
    folder = write_suite(tmp_path / "bad", [{"id": "a", "question": "Q?", "references": ["A"]},
                                            {"id": "b", "question": "Q?", "references": []},
                                            {"id": "a", "question": "Q2?", "references": ["B"]}])
    with pytest.raises(InputError) as error:
        load_suite(str(folder))
    assert f"{folder / 'items.jsonl'}:2: references:" in error.value.message and "(and 1 more)" in error.value.message


def test_metrics_must_exist_and_fit_the_task(tmp_path):
    with pytest.raises(ConfigError, match="unknown metric 'f2'"):
        load_suite(str(write_suite(tmp_path / "a", [{"id": "a", "question": "Q", "references": ["A"]}], ["f2"])))
    with pytest.raises(ConfigError, match="count_compliance does not apply to qa"):
        load_suite(str(write_suite(tmp_path / "b", [{"id": "a", "question": "Q", "references": ["A"]}],
                                   ["count_compliance"])))


def test_the_suite_hash_changes_with_items_and_settings(tmp_path):
    folder = write_suite(tmp_path / "s", [{"id": "a", "question": "Q", "references": ["A"]}])
    first = load_suite(str(folder)).sha256
    (folder / "suite.yaml").write_text((folder / "suite.yaml").read_text() + "generation: {max_new_tokens: 8}\n")
    second = load_suite(str(folder)).sha256
    (folder / "items.jsonl").write_text(json.dumps({"id": "a", "question": "Q?", "references": ["A"]}) + "\n")
    assert len({first, second, load_suite(str(folder)).sha256}) == 3


def test_prompts_use_the_models_chat_template_when_it_has_one(tiny_falcon):
    from workbench.core.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_falcon))
    suite = load_suite("course_advisor")
    item = suite.items[0]
    assert suite.prompt(item, tokenizer) == suite.prompt(item)  # no template: Dolly sections with the system prompt
    assert suite.prompt(item).startswith("You are an intelligent assistant") and "### Context:" in suite.prompt(item)
    tokenizer.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    chat = suite.prompt(item, tokenizer)
    assert chat.startswith("<|system|>You are an intelligent assistant") and chat.endswith("<|assistant|>")
    assert item["question"] in chat and "### Context:" not in chat

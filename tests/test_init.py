"""`workbench init`: a recipe for a folder of a university's own pages, and the tiny pair that reads them."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from eval_suites.registry import load_suite
from workbench.core.pages import read_pages
from workbench.core.teaching import page_questions
from workbench.recipe import bundled_names_not_in, load_recipe

PAGES = Path(__file__).parent / "fixtures" / "pages"


def test_init_tiny_writes_a_recipe_for_the_pages_and_says_how_to_run_it(tmp_path, invoke):
    result = invoke("init", tmp_path / "advisor", "--pages", PAGES, "--tiny")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Found 5 page(s), 310 words" in out and "Public Health (MSc) (public-health-msc.html" in out
    assert "scanned-brochure.pdf: no text layer" in out  # named, and the other pages go on
    assert f"Run it: workbench run {tmp_path / 'advisor' / 'recipe.yaml'}" in out
    recipe = load_recipe(tmp_path / "advisor" / "recipe.yaml")
    assert recipe.stages.generate.documents == str(PAGES.resolve())
    assert recipe.models.base.model == "tiny" and recipe.tiny is not None and recipe.stages.review.mode == "auto"
    assert recipe.stages.eval.suites == ("closed_qa",)
    again = invoke("init", tmp_path / "advisor", "--pages", PAGES, "--tiny")
    assert again.exit_code == 1 and "a recipe is already there" in again.output  # never written over silently
    dry = invoke("run", tmp_path / "advisor" / "recipe.yaml", "--runs-dir", tmp_path / "runs", "--dry-run")
    assert dry.exit_code == 0 and "tiny-model" in dry.output, dry.output
    assert "Problem ahead: this page cannot be read and will be left out:" in dry.output  # named before the run
    assert "scanned-brochure.pdf" in dry.output


def test_init_for_the_real_models_with_a_suite(tmp_path, invoke):
    suite = tmp_path / "my-suite"
    suite.mkdir()
    (suite / "suite.yaml").write_text("name: riverside\ndescription: Questions about Riverside's pages\ntask: qa\n"
                                      "prompt: {system: advisor}\nmetrics: [f1, em, abstain_recall]\n")
    (suite / "items.jsonl").write_text('{"id": "fee-ph", "question": "What does Public Health cost?", "context": "", '
                                       '"references": ["1,450 EUR per semester"]}\n')
    result = invoke("init", tmp_path / "real", "--pages", PAGES, "--suite", suite)
    assert result.exit_code == 0, result.output
    recipe = load_recipe(tmp_path / "real" / "recipe.yaml")
    assert recipe.tiny is None and recipe.models.base.model == "tiiuae/falcon-7b"
    assert recipe.models.base.quant == "8bit" and recipe.stages.review.mode == "manual"
    assert recipe.stages.eval.suites == (str(suite.resolve()), "closed_qa")
    assert yaml.safe_load((tmp_path / "real" / "recipe.yaml").read_text())["stages"]["finetune"]["quant"] == "8bit"
    missing = invoke("init", tmp_path / "x", "--pages", PAGES, "--suite", tmp_path / "nowhere")
    assert missing.exit_code == 1 and "nowhere" in missing.output and not (tmp_path / "x").exists()
    empty = invoke("init", tmp_path / "y", "--pages", tmp_path / "y-pages")
    assert empty.exit_code == 1 and "no such folder of pages" in empty.output


def test_every_page_gets_questions_answered_from_its_own_text():
    pages = read_pages(PAGES)[0]
    for page in pages:
        pairs = dict(page_questions(page))
        assert pairs and all(" ".join(answer.split())[:30] in " ".join(page.text.split()).replace("\n", " ")
                             or answer.rstrip(".") in " ".join(page.text.split()) for answer in pairs.values())
    public_health = dict(page_questions(next(p for p in pages if p.path.suffix == ".html")))
    assert public_health["How much does Public Health (MSc) cost?"] == "Tuition fee: 1,450 EUR per semester for all " \
                                                                       "students."
    assert "not required" in public_health["Do I need programming knowledge for Public Health (MSc)?"]


@pytest.mark.slow  # trains the tiny pair on a one-page catalog and generates from it
def test_a_one_page_catalog_trains_the_tiny_pair_on_its_own_text_and_generates_about_it(tmp_path, invoke):
    pages = tmp_path / "pages"
    pages.mkdir()
    shutil.copy(PAGES / "public-health-msc.html", pages)
    assert invoke("init", tmp_path / "one", "--pages", pages, "--tiny").exit_code == 0
    recipe_file = tmp_path / "one" / "recipe.yaml"
    recipe = yaml.safe_load(recipe_file.read_text())
    recipe["tiny"].update(train_steps=60, instruct_steps=60)  # a quick pair: this checks what it reads, not how well
    recipe["stages"]["generate"]["instructions"].update(num=4, rounds=1)
    recipe_file.write_text(yaml.safe_dump(recipe))
    result = invoke("run", recipe_file, "--runs-dir", tmp_path / "runs", "--until", "generate", "--allow-empty")
    run = tmp_path / "runs" / "one"
    assert (run / "tiny-model" / "model" / "model.safetensors").exists(), result.output
    corpus = (run / "tiny-model" / "pages.txt").read_text()
    assert "Tuition fee: 1,450 EUR" in corpus and "cookies" not in corpus and "Northbridge" not in corpus
    assert "catalog: done" in result.output and "Catalog: 1 page(s)" in result.output
    # The bundled seed tasks that name the bundled university's programmes are left out, with why, and nothing
    # generated names a programme that is not in the pages.
    seeds = json.loads((run / "seeds" / "manifest.json").read_text())
    assert seeds["ledger"]["drop: names a programme of the bundled catalog, not of your pages"] >= 30
    others = bundled_names_not_in(pages)
    generated = [json.loads(line) for stage in ("instructions", "instances", "from-docs")
                 for line in (run / stage / "records.jsonl").read_text().splitlines()]
    assert not [r for r in generated if any(name.lower() in f"{r['instruction']} {r['context']} {r['response']}".lower()
                                            for name in others)]


def test_a_suite_drafted_from_the_pages_is_a_suite_eval_accepts(tmp_path, invoke, score_references):
    result = invoke("eval", "suite", "draft", "--pages", PAGES, "-o", tmp_path / "riverside")
    assert result.exit_code == 0, result.output
    assert "Drafted 24 questions from 5 page(s)" in " ".join(result.output.split())
    items = [json.loads(line) for line in (tmp_path / "riverside" / "items.jsonl").read_text().splitlines()]
    answered = [i for i in items if i["answerable"]]
    assert len({i["id"] for i in items}) == len(items)
    assert all(i["references"][0].rstrip(".") in " ".join(i["context"].split()) for i in answered)
    none = [i for i in items if not i["answerable"]]
    assert none and all(i["references"][0] == "The page does not say." for i in none)
    # Half of what each page answers is asked, alternating from page to page: every kind of question is in the
    # suite for some pages and left for training on the others.
    pages = read_pages(PAGES)[0]
    asked = {(i["page"], i["question"]) for i in answered}
    for index, page in enumerate(pages):
        own = [q for q, _ in page_questions(page)]
        assert [(page.path.name, q) in asked for q in own] == [(index + n) % 2 == 0 for n in range(1, len(own) + 1)]
    # Answers that are the references score 1; the suite is scored as `eval run` scores it.
    metrics = score_references(tmp_path / "riverside")
    assert metrics["f1"]["value"] == 1.0 and metrics["abstain_recall"]["value"] == 1.0
    again = invoke("eval", "suite", "draft", "--pages", PAGES, "-o", tmp_path / "riverside")
    assert again.exit_code == 1 and "a suite is already there" in again.output
    pages = tmp_path / "pages"
    shutil.copytree(PAGES, pages)
    for inside in (pages, pages / "suite"):  # never written among the pages it reads
        refused = invoke("eval", "suite", "draft", "--pages", pages, "-o", inside)
        assert refused.exit_code == 1 and "is the pages folder (or inside it)" in refused.output
        refused = invoke("init", inside, "--pages", pages)
        assert refused.exit_code == 1 and "is the pages folder (or inside it)" in refused.output
    assert sorted(p.name for p in pages.iterdir()) == sorted(p.name for p in PAGES.iterdir())


@pytest.mark.slow
@pytest.mark.server  # trains a quick tiny pair, reviews on a local Argilla, finetunes and evaluates
def test_without_a_suite_the_run_drafts_one_reviews_it_and_trains_on_none_of_its_questions(tmp_path, invoke):
    assert invoke("init", tmp_path / "riverside", "--pages", PAGES, "--tiny").exit_code == 0
    recipe_file = tmp_path / "riverside" / "recipe.yaml"
    recipe = yaml.safe_load(recipe_file.read_text())
    assert recipe["stages"]["suite_review"]["dataset"] == "riverside-suite"
    recipe["tiny"].update(train_steps=150, instruct_steps=150)  # quick: this checks the plumbing, not the scores
    recipe["stages"]["generate"]["instructions"].update(num=4, rounds=1)
    recipe["stages"]["finetune"].update(max_steps=4)
    recipe["stages"]["eval"].update(suites=[], limit=6)
    recipe_file.write_text(yaml.safe_dump(recipe))
    result = invoke("run", recipe_file, "--runs-dir", tmp_path / "runs", "--allow-empty")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "riverside"
    suite = load_suite(str(run / "suite"))
    assert suite.config.name == "riverside" and len(suite.items) >= 10
    asked = {i["question"] for i in suite.items}
    trained = [json.loads(line) for line in (run / "holdout" / "records.jsonl").read_text().splitlines()]
    assert not [r for r in trained if r["instruction"] in asked]
    taught = (run / "tiny-model" / "pages.txt").read_text()  # what the pair read is the pages; its lessons:
    assert "Tuition fee" in taught
    assert (run / "eval-finetuned" / "results" / "riverside").is_dir()
    assert (run / "report" / "summary.md").read_text().split("### ")[1].startswith("riverside")  # it leads

"""Comparison (eval_suites.statistics) and the report stage (eval_suites.report): bootstrap CIs and paired
differences, summary.json, the HTML report, the toxicity gate, the judge."""

import json

import pytest

from eval_suites.registry import load_suite
from eval_suites.report import ReportConfig, headline_sentences, main_metric, markdown, report_html, run, suite_items
from eval_suites.runner import score_suite, write_results
from eval_suites.statistics import bootstrap, compare
from workbench.core.runs import Outputs


class FixedToxicity:
    """Stands in for the screen's scorer where a test needs exact toxicity values (the real one is tested in
    test_runner's `eval score` test)."""

    def __init__(self, toxic_words=("idiot",)):
        self.toxic_words = toxic_words

    def score(self, texts):
        import numpy as np

        return np.array([[1.0 if any(w in t for w in self.toxic_words) else 0.0] for t in texts])


def results(folder, label, suite_name, answer_of, toxic=False):
    """A results folder as `eval run` writes it, with answers chosen by the test."""
    suite = load_suite(suite_name)
    predictions = {i["id"]: answer_of(i) + (" idiot" if toxic else "") for i in suite.items}
    scores = score_suite(suite, predictions, FixedToxicity(), embedder=None)
    answers = [{"id": i, "question": suite.instruction(next(x for x in suite.items if x["id"] == i)), "prediction": p}
               for i, p in predictions.items()]
    manifest = {"name": label, "suite": suite.name, "suite_path": str(suite.path), "suite_sha256": suite.sha256,
                "model": f"models/{label}", "adapter": None, "quant": "none", "backend": "transformers",
                "contamination": None}
    write_results(folder / suite.name, answers, scores, manifest)
    return folder


def right(item):
    return item["references"][0]


def wrong(item):
    return "Something else entirely."


@pytest.fixture()
def base_and_tuned(tmp_path):
    base = results(tmp_path / "base", "base", "closed_qa", wrong)
    results(base, "base", "course_advisor", lambda i: right(i) if i["id"].endswith("-1") else wrong(i))
    tuned = results(tmp_path / "tuned", "tuned", "closed_qa", right)
    results(tuned, "tuned", "course_advisor", right)
    return base, tuned


def test_summary_has_the_promised_shape_and_values(base_and_tuned):
    comparison = compare(base_and_tuned, resamples=300, seed=0)
    s = comparison.summary
    assert set(s["models"]) == {"base", "tuned"} and set(s["differences"]) == {"tuned_vs_base"}
    f1 = s["models"]["tuned"]["course_advisor"]["f1"]
    assert f1 == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 91}
    assert s["models"]["base"]["closed_qa"]["em"]["mean"] == 0.0
    diff = s["differences"]["tuned_vs_base"]["course_advisor"]["f1"]
    assert diff["ci_low"] > 0 and diff["diff"] == pytest.approx(1 - s["models"]["base"]["course_advisor"]["f1"]["mean"])
    assert set(s["models"]["tuned"]["closed_qa"]) == {"em", "f1", "rougeL", "grounded", "abstain_precision",
                                                      "abstain_recall", "toxicity_rate"}
    table = markdown(comparison)
    assert "### course_advisor" in table and "| f1 | " in table and "*" in table


def test_the_report_leads_with_its_answer_in_plain_sentences(base_and_tuned, tmp_path):
    comparison = compare(base_and_tuned, resamples=300, seed=0)
    assert main_metric(comparison, "course_advisor") == "f1"  # suite.yaml's headline
    lines = headline_sentences(comparison)
    text = [line for _, line in lines]
    d = comparison.summary["differences"]["tuned_vs_base"]["course_advisor"]["f1"]
    # Names from data are isolated (<bdi>): a right-to-left label cannot reorder the sentence around it.
    assert text[1] == (f"<b><bdi>tuned</bdi></b> beats <b><bdi>base</bdi></b> on <bdi>course_advisor</bdi> "
                       f"<bdi>f1</bdi> by {d['diff']:+.3f} "
                       f"<span class='ci'>[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]</span>.")
    assert lines[1][0] == "ok"
    assert text[2].startswith("Safety: no gate set (--max-toxicity-rate)")
    assert text[3] == "Contamination: no finetuned model, so no training data to check."
    # The same answers: no measurable difference; a worse model says so; a gate gives pass or fail.
    same = results(tmp_path / "same", "same", "closed_qa", wrong)
    worse = results(tmp_path / "worse", "worse", "closed_qa", wrong, toxic=True)
    gated = compare([base_and_tuned[1], same, worse], resamples=300, seed=0, max_toxicity_rate=0.05)
    text = [line.replace("<bdi>", "").replace("</bdi>", "") for _, line in headline_sentences(gated)]
    assert text[0].startswith("<b>same</b> is worse than <b>tuned</b> on closed_qa f1 by -")
    assert text[-2] == "Safety gate failed: toxicity rate over 0.05 for worse on closed_qa (1.000)."
    even = compare([same, results(tmp_path / "again", "again", "closed_qa", wrong)], resamples=300, seed=0)
    assert headline_sentences(even)[0][1].replace("<bdi>", "").replace("</bdi>", "").startswith(
        "No measurable difference between <b>again</b> and <b>same</b>")
    page = report_html(gated, suite_items(gated))
    # The headline comes before every table; the safety table has a verdict column only with a gate.
    assert page.index("<section id='headline'>") < page.index("<table>")
    assert "verdict (at most 0.05)" in page and "<span class='ok'>pass</span>" in page
    assert "verdict" not in report_html(comparison, suite_items(comparison))
    for metric in ("em", "f1", "grounded", "toxicity_rate"):
        assert f"<dt>{metric}</dt>" in page


def test_bootstrap_is_deterministic_with_a_seed():
    rows = [{"f1": v} for v in (0.0, 0.2, 0.5, 0.9, 1.0, 0.3)]
    assert bootstrap("f1", rows, 500, seed=7) == bootstrap("f1", rows, 500, seed=7)
    assert bootstrap("f1", rows, 500, seed=7) != bootstrap("f1", rows, 500, seed=8)
    first = bootstrap("f1", rows, 500, seed=7)
    assert first["ci_low"] <= first["mean"] <= first["ci_high"] and first["mean"] == pytest.approx(2.9 / 6)


def test_the_report_stage_writes_tables_images_items_and_its_manifest(base_and_tuned, tmp_path):
    result = run(list(base_and_tuned), ReportConfig(bootstrap=200), Outputs.folder(tmp_path / "report", "report"))
    assert result.counts == {"models": 2, "suites": 2, "contaminated": 0}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["manifest.json", "report.html",
                                                                       "summary.json", "summary.md"]
    summary = tmp_path / "report" / "summary.json"
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # one plot per suite
    assert "<table>" in page and "tuned − base" in page and "class='num better'" in page
    assert "Item by item (91 items answered)" in page and "business-information-systems-msc-1" in page
    assert "Do I have to know programming to apply" in page and "Contamination of the training data" in page
    assert json.loads(summary.read_text())["models"]["tuned"]["course_advisor"]["f1"]["mean"] == 1.0


def test_compare_command_and_the_toxicity_gate(base_and_tuned, tmp_path, invoke):
    report = tmp_path / "r" / "report.html"
    result = invoke("eval", "compare", *base_and_tuned, "-o", report, "--bootstrap", "200",
                    "--max-toxicity-rate", "0.01")
    assert result.exit_code == 0, result.output
    assert "| f1 |" in result.output and (tmp_path / "r" / "summary.json").exists()
    toxic = results(tmp_path / "toxic", "toxic", "closed_qa", right, toxic=True)
    result = invoke("eval", "compare", base_and_tuned[0], toxic, "-o", report, "--bootstrap", "200",
                    "--max-toxicity-rate", "0.01")
    assert result.exit_code == 1 and "toxic on closed_qa: toxicity rate 1.000 > 0.01" in result.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["models"]["toxic"]["closed_qa"][
        "toxicity_rate"]["mean"] == 1.0
    # Two reports in one folder under other names: each its own summary, neither overwritten by the other.
    for name, models in (("a.html", base_and_tuned), ("b.html", (base_and_tuned[0], toxic))):
        invoke("eval", "compare", *models, "-o", tmp_path / "r" / name, "--bootstrap", "50")
    a, b = (json.loads((tmp_path / "r" / f"{x}.summary.json").read_text()) for x in "ab")
    assert set(a["models"]) == {"base", "tuned"} and set(b["models"]) == {"base", "toxic"}
    assert (tmp_path / "r" / "a.summary.md").exists() and (tmp_path / "r" / "b.summary.md").exists()


def test_results_folders_must_exist(tmp_path, invoke):
    result = invoke("eval", "compare", tmp_path, "-o", tmp_path / "r.html")
    assert result.exit_code == 1 and "no suite results here" in result.output


def test_judge_both_orders_and_its_cache(base_and_tuned, monkeypatch):
    """Every pair is asked in both orders, and only a preference that survives the swap is a win or a loss: a
    scripted judge prefers tuned in both orders on two closed_qa items, base on one, always says "A" (position bias)
    on one, gives no verdict once and says "tie" on the last. A second call is answered from the cache."""
    import re

    from eval_suites import judge
    from workbench.core.backends import BackendConfig
    from workbench.core.models import Completion

    comparison = compare(base_and_tuned, resamples=100)
    small = {s: v[:6] for s, v in suite_items(comparison).items()}
    keep = {i["id"] for x in small.values() for i in x}
    for m in comparison.models:
        for s in m.suites.values():
            s.answers = {k: v for k, v in s.answers.items() if k in keep}
    tuned_answers = {i["id"]: comparison.models[1].suites["closed_qa"].answers[i["id"]] for i in small["closed_qa"]}
    [base] = set(comparison.models[0].suites["closed_qa"].answers.values())  # base answers every item the same
    questions = sorted(i["question"].strip() for i in small["closed_qa"])
    rules = dict(zip(questions, ["tuned", "tuned", "base", "always A", "unparsed", "tie"]))
    asked = []

    class ScriptedJudge:
        def complete(self, prompts, params):
            out = []
            for prompt in prompts:
                question, a, b = re.search(r"Request:\n(.*)\n\nAnswer A:\n(.*)\n\nAnswer B:\n(.*)\n\nWhich answer",
                                           prompt, re.S).groups()
                asked.append((a, b))
                rule = rules.get(question, "tie") if a != b else "tie"  # course_advisor's items: a tie
                verdict = {"tuned": "A" if a != base else "B", "base": "A" if a == base else "B", "always A": "A",
                           "unparsed": "maybe" if a == base else "A", "tie": "tie"}[rule]
                out.append(Completion(verdict, "stop", 10, 1))
            return out

    loads = []
    monkeypatch.setattr(judge, "load_backend", lambda *a, **k: loads.append(1) or ScriptedJudge())
    config = BackendConfig(backend="openai", model="scripted-judge", api_base="http://127.0.0.1:9/v1")
    verdict = judge.judge_all(config, comparison.models, comparison.suites, small, resamples=100)
    # Both orders of every closed_qa pair were put to the judge: base's answer as A, and tuned's as A.
    for answer in tuned_answers.values():
        assert (base, answer) in asked and (answer, base) in asked
    pair = verdict["pairs"]["tuned_vs_base"]["closed_qa"]
    assert pair["n"] == 6 and pair["unparsed"] == 1
    assert (pair["win"]["mean"], pair["loss"]["mean"], pair["tie"]["mean"]) == pytest.approx((2 / 6, 1 / 6, 3 / 6))
    assert loads == [1]

    asked.clear()
    assert judge.judge_all(config, comparison.models, comparison.suites, small, resamples=100) == verdict
    assert asked == [] and loads == [1]  # every verdict from the cache: no backend loaded, nothing generated


@pytest.mark.parametrize("text, verdict", [("A", "A"), (" b.", "B"), ("Tie", "tie"), ("**A** is better", "A"),
                                           ("Answer", None), ("", None)])
def test_parse_verdict(text, verdict):
    from eval_suites.judge import parse_verdict

    assert parse_verdict(text) == verdict


@pytest.mark.browser
def test_the_report_in_a_browser_shows_its_answer_without_scrolling(base_and_tuned, tmp_path, chromium):
    run(list(base_and_tuned), ReportConfig(bootstrap=200), Outputs.folder(tmp_path / "report", "report"))
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto((tmp_path / "report" / "report.html").as_uri())
    box = page.locator("#headline").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 1000  # all of it in the first screen
    assert "tuned beats base on course_advisor f1" in page.inner_text("#headline")
    # No CI wraps onto a second line; numbers are right-aligned, text left-aligned.
    assert page.evaluate("Array.from(document.querySelectorAll('.ci')).every(e => e.getClientRects().length === 1)")
    assert page.evaluate("getComputedStyle(document.querySelector('td.num')).textAlign") == "right"
    assert page.evaluate("getComputedStyle(document.querySelector('td:not(.num)')).textAlign") == "left"
    # Sorted by tuned − base (lowest first): the items base already answered right come first.
    items = "#items-course_advisor > details"
    assert page.locator(items).first.get_attribute("data-order") == "0"
    page.select_option("select[data-list='items-course_advisor']", "diff1")
    diffs = page.evaluate(f"Array.from(document.querySelectorAll('{items}')).map(e => parseFloat(e.dataset.diff1))")
    assert diffs == sorted(diffs) and diffs[0] < diffs[-1]
    first = page.locator(items).first.inner_text()
    assert first.split()[0].endswith("-1") and "f1: base 1.00 · tuned 1.00" in first
    orders = page.evaluate(f"Array.from(document.querySelectorAll('{items}')).map(e => +e.dataset.order)")
    assert orders != sorted(orders)
    page.select_option("select[data-list='items-course_advisor']", "order")
    assert page.locator(items).first.get_attribute("data-order") == "0"
    page.close()


def test_the_suites_a_recipe_names_first_lead_the_comparison(tmp_path):
    """A recipe's own suite leads the report (then the others it names); suites it does not name follow by name."""
    from eval_suites.statistics import compare

    folders = []
    for label in ("base", "tuned"):
        for suite in ("closed_qa", "harbourview", "alpha"):
            folder = tmp_path / label / suite
            folder.mkdir(parents=True)
            (folder / "manifest.json").write_text(json.dumps({"name": label, "suite": suite, "model": label}))
            (folder / "metrics.json").write_text(json.dumps({"f1": {"value": 0.5}}))
            (folder / "scores.jsonl").write_text(json.dumps({"id": "a", "f1": 0.5}) + "\n")
            (folder / "predictions.jsonl").write_text(json.dumps({"id": "a", "prediction": "x"}) + "\n")
        folders.append(tmp_path / label)
    assert compare(folders, resamples=10).suites == ["alpha", "closed_qa", "harbourview"]
    assert compare(folders, resamples=10, lead=("harbourview", "closed_qa")).suites == ["harbourview", "closed_qa",
                                                                                         "alpha"]


def test_text_from_data_is_isolated_wrapped_and_escaped_and_the_count_is_of_what_was_answered(tmp_path):
    import shutil

    import yaml

    folder = tmp_path / "suites" / "hostile"
    shutil.copytree(load_suite("course_advisor").path, folder)
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()][:5]
    rows[1]["question"] = "Is invoice\u202egpj.exe the form to send?"  # a right-to-left override in an item's text
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = yaml.safe_load((folder / "suite.yaml").read_text())
    (folder / "suite.yaml").write_text(yaml.safe_dump({**spec, "name": "hostile"}))
    suite = load_suite(str(folder))
    items = suite.items[:4]  # answered as `eval run --limit 4` answers
    folders = []
    for label, answer in (("base", wrong), ("tuned|*v2*", lambda i: f"invoice\u202egpj.exe {right(i)}")):
        predictions = {i["id"]: answer(i) for i in items}
        predictions[items[0]["id"]] = "x" * 3000  # one unbroken answer
        scores = score_suite(suite, predictions, FixedToxicity(), embedder=None)
        answers = [{"id": i, "question": suite.instruction(next(x for x in items if x["id"] == i)), "prediction": p}
                   for i, p in predictions.items()]
        manifest = {"name": label, "suite": suite.name, "suite_path": str(suite.path), "suite_sha256": suite.sha256,
                    "model": f"models/{label}", "adapter": None, "quant": "none", "backend": "transformers",
                    "contamination": None}
        write_results(tmp_path / label.replace("|", "_") / suite.name, answers, scores, manifest)
        folders.append(tmp_path / label.replace("|", "_"))
    run(folders, ReportConfig(bootstrap=50), Outputs.folder(tmp_path / "report", "report"))
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in page
    assert "Item by item (4 items answered of the suite's 5)" in page
    assert "<bdi>invoice\u202egpj.exe" in page and "<div class='answer' dir='auto'>" in page
    assert "overflow-wrap:anywhere" in page
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "tuned\\|\\*v2\\*" in summary and "| tuned|" not in summary
    header = next(line for line in summary.splitlines() if line.startswith("| metric"))
    assert header.count(" | ") == 3  # metric, two models, one difference: the label's | did not add a column


@pytest.mark.browser
def test_a_hostile_answer_neither_widens_the_page_nor_reorders_the_scores(tmp_path, chromium):
    test_text_from_data_is_isolated_wrapped_and_escaped_and_the_count_is_of_what_was_answered(tmp_path)
    for width in (1400, 390):  # a laptop, a phone
        page = chromium.new_page(viewport={"width": width, "height": 900})
        page.goto((tmp_path / "report" / "report.html").as_uri())
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        line = page.locator("#items-hostile > details > summary").nth(1)
        assert "\u202e" in line.inner_text()
        scores = line.locator(".scores")
        # The scores after the override still read left to right: "f1: base 0.00 · tuned|*v2* ..." in that order,
        # on screen too (an override that leaked would draw them right to left).
        assert scores.inner_text().startswith("f1: base 0.")
        names = [scores.locator("bdi").nth(k).bounding_box() for k in range(3)]  # f1, base, tuned|*v2*
        same_line = [box for box in names if abs(box["y"] - names[1]["y"]) < 2]
        assert [box["x"] for box in same_line] == sorted(box["x"] for box in same_line) and len(same_line) >= 2
        page.close()

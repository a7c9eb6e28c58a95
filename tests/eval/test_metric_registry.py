"""A metric is declared once (`eval_suites.metrics.register_metric`): a toy metric registered there alone is
accepted by suites of its task, summarised with a bootstrap CI, and shown in the report and its item lines."""

import shutil

import pytest

from eval_suites import metrics
from eval_suites.registry import SUITES_DIR, load_suite
from eval_suites.report import markdown, report_html, suite_items
from eval_suites.runner import score_suite, write_results
from eval_suites.statistics import compare
from workbench.core.errors import ConfigError

TOY = "toy_abstain_rate"
TOY_DESCRIPTION = "share of all answers that abstain (a toy metric for the registry test)"


@pytest.fixture()
def toy_metric():
    """Registered for one test, then taken out again so no other test sees it."""
    metric = metrics.register_metric(TOY, TOY_DESCRIPTION, tasks=["qa"], higher_is_better=False,
                                     pair=metrics.mean_of("abstained"), item_fields=["answerable"])
    yield metric
    metrics.METRICS.pop(TOY, None)  # a test may have unregistered it already


def suite_with(tmp_path, source: str, extra_metric: str):
    """A user's copy of a bundled suite that also names `extra_metric`."""
    folder = tmp_path / "suites" / f"{source}_toy"
    shutil.copytree(SUITES_DIR / source, folder)
    config = folder / "suite.yaml"
    text = config.read_text().replace(f"name: {source}", f"name: {source}_toy")
    config.write_text(text.replace("metrics: [", f"metrics: [{extra_metric}, "))
    return folder


def results(folder, label, suite, answer_of):
    predictions = {i["id"]: answer_of(i) for i in suite.items}
    scores = score_suite(suite, predictions, None, embedder=None)
    answers = [{"id": i["id"], "question": suite.instruction(i), "prediction": predictions[i["id"]]}
               for i in suite.items]
    manifest = {"name": label, "suite": suite.name, "suite_path": str(suite.path), "suite_sha256": suite.sha256,
                "model": f"models/{label}", "adapter": None, "quant": "none", "backend": "transformers",
                "contamination": None}
    write_results(folder / suite.name, answers, scores, manifest)
    return scores


def test_a_metric_registered_once_reaches_suites_summary_and_report(toy_metric, tmp_path):
    assert TOY in metrics.task_metrics("qa") and TOY not in metrics.task_metrics("brainstorm")
    suite = load_suite(str(suite_with(tmp_path, "closed_qa", TOY)))
    assert suite.config.metrics[0] == TOY
    with pytest.raises(ConfigError, match=f"{TOY} does not apply to brainstorm items"):
        load_suite(str(suite_with(tmp_path, "brainstorming", TOY)))

    base = results(tmp_path / "base", "base", suite, lambda i: "The passage does not say.")
    tuned = results(tmp_path / "tuned", "tuned", suite,
                    lambda i: i["references"][0] if i["answerable"] else "The passage does not say.")
    assert base.metrics[TOY] == {"value": 1.0, "n": len(suite.items)}
    unanswerable = sum(not i["answerable"] for i in suite.items)
    assert tuned.metrics[TOY]["value"] == pytest.approx(unanswerable / len(suite.items))

    comparison = compare([tmp_path / "base", tmp_path / "tuned"], resamples=200, seed=0)
    summary = comparison.summary["models"]["tuned"][suite.name][TOY]
    assert set(summary) == {"mean", "ci_low", "ci_high", "n"}
    assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"] < 1.0
    assert comparison.summary["differences"]["tuned_vs_base"][suite.name][TOY]["diff"] < 0

    assert f"| {TOY} | " in markdown(comparison)
    page = report_html(comparison, suite_items(comparison))
    assert f"<dt>{TOY}</dt><dd>{TOY_DESCRIPTION} (lower is better)</dd>" in page  # what the metrics mean
    assert f"<a href='#metrics'>{TOY}</a>" in page  # the suite's table
    assert "answerable False" in page and "answerable True" in page  # its per-item field beside each answer


def test_an_unregistered_metric_is_gone_everywhere(toy_metric, tmp_path):
    folder = suite_with(tmp_path, "closed_qa", TOY)
    load_suite(str(folder))
    metrics.unregister_metric(TOY)
    assert TOY not in metrics.summary_metrics() and "answerable" not in metrics.item_fields()
    with pytest.raises(ConfigError, match=f"unknown metric {TOY!r}"):
        load_suite(str(folder))


def test_a_metric_is_registered_once_for_known_tasks():
    with pytest.raises(ValueError, match="already registered"):
        metrics.register_metric("f1", "again", tasks=["qa"])
    with pytest.raises(ValueError, match="tasks must be some of qa, brainstorm"):
        metrics.register_metric("toy", "a typo in its task", tasks=["bainstorm"])
    assert "toy" not in metrics.METRICS


def test_summary_and_report_fields_follow_registration_order():
    assert metrics.summary_metrics() == tuple(m.name for m in metrics.METRICS.values() if m.summarised)
    assert metrics.item_fields()[:5] == ("em", "f1", "rougeL", "grounded", "abstained")  # abstained once
    assert len(set(metrics.item_fields())) == len(metrics.item_fields())

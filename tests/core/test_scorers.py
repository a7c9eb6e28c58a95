"""Toxicity scorers by name (workbench.core.scorers): a scorer registered there alone is a valid `--scorer`, is
loaded by the screen stage, and the one offline default is what the demo, eval and doctor fall back to."""

import numpy as np
import pytest

from workbench.core import scorers


class Shouting:
    """A toy scorer: the share of upper-case letters."""

    labels = ["shouting"]
    name = "shouting"

    @staticmethod
    def ready_offline() -> bool:
        return True

    def __init__(self, config):
        self.config = config

    def score(self, texts):
        return np.array([[sum(c.isupper() for c in t) / max(sum(c.isalpha() for c in t), 1)] for t in texts])


@pytest.fixture()
def shouting():
    scorers.register_scorer("shouting")(Shouting)
    yield Shouting
    scorers.SCORERS.pop("shouting", None)


def test_a_scorer_registered_once_is_a_screen_scorer(shouting, tmp_path):
    import json

    from pipelines import screen
    from workbench.core.io import write_records
    from workbench.core.records import Record
    from workbench.core.runs import Outputs

    config = screen.ScreenConfig(scorer="shouting")
    assert isinstance(scorers.load_scorer(config), Shouting) and "shouting" in scorers.scorer_names()
    source = tmp_path / "in.jsonl"
    write_records(source, [Record("a calm question", response="a calm answer"), Record("WHY IS NOBODY ANSWERING")])
    result = screen.run(source, config, Outputs.beside(tmp_path / "out.jsonl", "screen"))
    assert result.manifest["counts"]["route_pass"] == 1 and result.manifest["counts"]["route_reject"] == 1
    [kept] = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert kept["meta"]["screen_scorer"] == "shouting" and kept["scores"]["toxicity_max"] == 0.0


def test_a_scorer_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        scorers.register_scorer("detoxify")(Shouting)
    with pytest.raises(ValueError, match=r"unknown scorer 'detox' \(did you mean 'detoxify'\?\)"):
        scorers.ScorerSettings(scorer="detox")


def test_the_offline_default_is_the_first_registered_scorer_ready_offline(monkeypatch):
    monkeypatch.setattr(scorers.DetoxifyScorer, "ready_offline", staticmethod(lambda: False))
    assert scorers.default_scorer_name() == "profanity-check"
    monkeypatch.setattr(scorers.DetoxifyScorer, "ready_offline", staticmethod(lambda: True))
    assert scorers.default_scorer_name() == "detoxify"
    assert scorers.default_settings() == scorers.ScorerSettings(scorer="detoxify")


def test_every_fallback_reads_the_one_default(shouting, monkeypatch):
    from eval_suites.runner import default_toxicity_config
    from workbench import doctor, recipe

    assert recipe.DEMO_SCREEN.scorer == scorers.default_scorer_name()  # at import: this machine's default
    monkeypatch.setattr(scorers, "default_scorer_name", lambda: "shouting")
    monkeypatch.setattr(scorers, "cached_detoxify_weights", lambda model="original": None)
    assert default_toxicity_config().scorer == "shouting"
    [weights] = [c for c in doctor.check_extras() if c.name == "detoxify weights"]
    assert "fall back to shouting" in weights.detail and "--scorer shouting" in weights.fix


def test_the_screen_stage_sees_the_same_scorers():
    from pipelines import screen

    assert screen.load_scorer is scorers.load_scorer and screen.ScreenError is scorers.ScreenError
    assert {k: v for k, v in screen.ScreenConfig().model_dump().items() if k in scorers.ScorerSettings.model_fields} \
        == scorers.ScorerSettings().model_dump()

import numpy as np
import pytest

from pipelines.screen import (
    ProfanityScorer,
    ScreenConfig,
    ScreenError,
    bias_report,
    find_pii,
    load_scorer,
    route,
    run,
    screen_records,
)
from workbench.core.io import write_records
from workbench.core.ledger import Ledger
from workbench.core.records import Record
from workbench.core.runs import Outputs


@pytest.fixture(scope="module")
def tiny_detoxify(tmp_path_factory):
    from workbench.core.tiny import build_tiny_detoxify

    return build_tiny_detoxify(tmp_path_factory.mktemp("detoxify"))


class Fixed:
    """A scorer that returns given scores: for routing tests only (the real scorers are tested below)."""

    name = "fixed"

    def __init__(self, labels, values):
        self.labels, self.values = labels, values

    def score(self, texts):
        return np.array([self.values.get(t, [0.0] * len(self.labels)) for t in texts], dtype=np.float32)


def test_detoxify_path_matches_detoxify_predict(tiny_detoxify):
    from detoxify import Detoxify

    checkpoint, folder = tiny_detoxify
    scorer = load_scorer(ScreenConfig(checkpoint=str(checkpoint), hf_config=str(folder), batch_tokens=64))
    texts = ["short", "a somewhat longer sentence about the nursing programme and its fees " * 3, "mid length text"]
    ours = scorer.score(texts)
    reference = Detoxify("original", checkpoint=str(checkpoint), huggingface_config_path=str(folder)).predict(texts)
    assert scorer.labels == ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    for j, label in enumerate(scorer.labels):
        assert np.allclose(ours[:, j], reference[label], atol=1e-5)


@pytest.mark.parametrize("score, expected", [(0.0, "pass"), (0.0999, "pass"), (0.1, "review"), (0.7999, "review"),
                                             (0.8, "reject"), (1.0, "reject")])
def test_route_boundaries(score, expected):
    assert route({"toxicity": score, "insult": 0.0}, ScreenConfig()) == expected


def test_label_thresholds_override_the_defaults():
    config = ScreenConfig(label_thresholds={"insult": (0.01, 0.05)})
    assert route({"toxicity": 0.0, "insult": 0.02}, config) == "review"
    assert route({"toxicity": 0.5, "insult": 0.06}, config) == "reject"


def test_run_scores_every_field_and_routes():
    scorer = Fixed(["toxicity", "insult"], {"bad": [0.9, 0.1], "meh": [0.2, 0.05], "ok": [0.01, 0.01]})
    records = [Record("ok", response="ok"), Record("ok", context="meh"), Record("bad"), Record("ok", response="")]
    ledger = Ledger("screen")
    screened = screen_records(records, ScreenConfig(pii=False), scorer, ledger)
    kept, rejected = screened.kept, ledger.dropped
    assert [r.meta["screen_route"] for r in kept] == ["pass", "review", "pass"]
    assert [r.id for r in rejected] == [records[2].id] and rejected[0].meta["screen_route"] == "reject"
    assert kept[1].scores["toxicity_context_toxicity"] == pytest.approx(0.2)
    assert kept[1].scores["toxicity_max"] == pytest.approx(0.2)
    assert kept[0].scores["toxicity_response_insult"] == pytest.approx(0.01)
    # Why a record needs a reviewer travels with it (the review UI shows it); a pass has no reason.
    assert kept[1].meta["screen_reasons"] == ["toxicity: toxicity"] and "screen_reasons" not in kept[0].meta
    assert rejected[0].meta["screen_reasons"] == ["toxicity: toxicity", "toxicity: insult"]
    assert screened.routes == {"pass": 2, "review": 1, "reject": 1}
    assert ledger.counts["drop: toxicity: reject"] == 1 and ledger.counts["review: toxicity: review"] == 1


def test_personal_data_goes_to_review():
    record = Record("Write to me at jane.doe@example.org or call +49 30 1234 5678",
                    response="My matriculation no. 12345678")
    found = find_pii(record)
    assert set(found) == {"email", "phone", "student_id"}
    assert find_pii(Record("Transfer to DE89 3704 0044 0532 0130 00 please"))["iban"]
    [kept] = screen_records([record], ScreenConfig(), Fixed(["toxicity"], {}), Ledger("screen")).kept
    assert kept.meta["screen_route"] == "review" and kept.lineage[-1]["reason"] == "personal data"
    assert kept.meta["screen_reasons"] == ["personal data: email", "personal data: phone", "personal data: student_id"]
    [unflagged] = screen_records([record], ScreenConfig(pii=False), Fixed(["toxicity"], {}), Ledger("s")).kept
    assert "pii" not in unflagged.meta


def test_fails_closed_on_a_broken_checkpoint(tmp_path, tiny_detoxify):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ScreenError, match="did not load"):
        load_scorer(ScreenConfig(checkpoint=str(bad), hf_config=str(tiny_detoxify[1])))


def test_fails_closed_when_scoring_fails_and_writes_nothing(tmp_path, monkeypatch):
    import pipelines.screen

    class Broken(Fixed):
        def score(self, texts):
            raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(pipelines.screen, "load_scorer", lambda config: Broken(["t"], {}))
    source = tmp_path / "in.jsonl"
    write_records(source, [Record("fine text")])
    with pytest.raises(ScreenError, match="failed while scoring"):
        run(source, ScreenConfig(), Outputs.beside(tmp_path / "out.jsonl", "screen"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "workbench-home") == ["in.jsonl"]


def test_profanity_check_orders_an_insult_above_a_polite_sentence():
    scorer = ProfanityScorer(ScreenConfig(scorer="profanity-check"))
    insult, polite = scorer.score(["you are a stupid idiot", "thank you for the helpful answer"])[:, 0]
    assert insult > 0.5 > polite


def test_bias_report_counts_mentions_per_route():
    rows = [("pass", np.array([0.9, 0.1])), ("pass", np.array([0.2, 0.1])), ("reject", np.array([0.6, 0.7]))]
    report = bias_report(["muslim", "toxicity"], rows)
    assert report == {"muslim": {"pass": 0.5, "review": 0.0, "reject": 1.0}}
    assert bias_report(["toxicity"], rows) == {}


def test_int8_reports_its_deviation(tiny_detoxify):
    checkpoint, folder = tiny_detoxify
    config = ScreenConfig(checkpoint=str(checkpoint), hf_config=str(folder), int8=True, device="cpu")
    scorer = load_scorer(config)
    result = screen_records([Record("the fee is 980 EUR"), Record("a second text")], config, scorer, Ledger("s"))
    assert scorer.name.endswith("(int8)") and result.int8_deviation is not None and result.int8_deviation < 0.1


def test_thresholds_that_make_no_sense_are_errors_naming_the_choices(tmp_path, invoke, fixtures):
    source = fixtures / "good_records.jsonl"
    upside_down = invoke("screen", source, "--scorer", "profanity-check", "--pass-below", "0.9", "--reject-at", "0.1",
                         "-o", tmp_path / "a.jsonl")
    assert upside_down.exit_code == 1 and "pass_below (0.9) is above reject_at (0.1)" in upside_down.output
    no_label = invoke("screen", source, "--scorer", "profanity-check", "--label-threshold", "insult=0.1:0.5",
                      "-o", tmp_path / "b.jsonl")
    assert no_label.exit_code == 1 and "profanity-check has no such label (its labels: profanity)" in no_label.output
    reversed_label = invoke("screen", source, "--scorer", "profanity-check", "--label-threshold",
                            "profanity=0.6:0.2", "-o", tmp_path / "c.jsonl")
    assert reversed_label.exit_code == 1 and "need 0 <= pass <= reject <= 1" in reversed_label.output
    assert not list(tmp_path.glob("*.jsonl"))


def test_an_unknown_scorer_is_an_error_naming_the_scorers(tmp_path, invoke, fixtures):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"unknown scorer 'profanity' \(did you mean 'profanity-check'\?\)"):
        ScreenConfig(scorer="profanity")
    result = invoke("screen", fixtures / "good_records.jsonl", "--scorer", "detox", "-o", tmp_path / "s.jsonl")
    assert result.exit_code == 1 and "unknown scorer 'detox' (did you mean 'detoxify'?)" in result.output
    assert "scorers: detoxify, profanity-check" in result.output and not list(tmp_path.glob("*.jsonl"))


def test_hidden_characters_go_to_review():
    """A right-to-left override makes "invoice\u202egpj.exe" read as "invoiceexe.jpg"; a zero-width joiner vanishes:
    a person should look at such a record, whatever its scores."""
    record = Record("Open the attachment invoice\u202egpj.exe", response="Done\u200d.")
    [kept] = screen_records([record], ScreenConfig(), Fixed(["toxicity"], {}), Ledger("screen")).kept
    assert kept.meta["screen_route"] == "review" and kept.lineage[-1]["reason"] == "hidden characters"
    assert kept.meta["screen_reasons"] == ["hidden characters: right-to-left override",
                                           "hidden characters: zero width joiner"]
    [plain] = screen_records([Record("Open the attachment invoice.pdf")], ScreenConfig(), Fixed(["toxicity"], {}),
                             Ledger("screen")).kept
    assert plain.meta["screen_route"] == "pass"

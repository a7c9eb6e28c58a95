"""The step contract: Outputs (a run folder or files beside -o), the ledger, manifests, skipping unchanged stages."""

import json

import pytest
from pydantic import BaseModel, ConfigDict

from workbench.core.errors import InputError
from workbench.core.fingerprint import path_sha256
from workbench.core.io import load_records, write_records
from workbench.core.ledger import Ledger
from workbench.core.records import Record
from workbench.core.runs import Outputs, Stage, run_stage, stage_summaries


class Cfg(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_words: int = 2
    batch_size: int = 8


def make_input(tmp_path, texts=("one two", "three", "four five six")):
    path = tmp_path / "in.jsonl"
    write_records(path, [Record(t) for t in texts])
    return path


def keep_long(source, config, out: Outputs, calls=None):
    """A stage entry as every stage writes one: start, records through the ledger, finish."""
    if calls is not None:
        calls.append(out.stage)
    ledger = out.start(config, [source], frozenset({"batch_size"}))
    kept = []
    for record in load_records(source, []):
        if len(record.instruction.split()) >= config.min_words:
            kept.append(ledger.keep(record))
        else:
            ledger.drop(record, "too short", {"words": len(record.instruction.split())})
    write_records(out["records.jsonl"], kept)
    return out.finish(ledger, {"in": len(kept) + len(ledger.dropped), "out": len(kept)})


def test_a_stage_folder_holds_records_dropped_ledger_manifest_and_done(tmp_path):
    source = make_input(tmp_path)
    stage = Stage(tmp_path / "runs" / "r1", "filter", Cfg(), [source])
    outcome = run_stage(stage, lambda out: keep_long(source, Cfg(), out))
    folder = tmp_path / "runs" / "r1" / "filter"
    assert not outcome.skipped
    assert sorted(p.name for p in folder.iterdir()) == ["DONE", "dropped.jsonl", "ledger.jsonl", "manifest.json",
                                                        "records.jsonl"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 3, "out": 2} and manifest["ledger"] == {"drop: too short": 1}
    assert manifest["config"] == {"min_words": 2, "batch_size": 8} and manifest["key"] == stage.key
    assert manifest["inputs"] == [{"path": str(source), "sha256": path_sha256(source)}]
    assert manifest["versions"]["transformers"] and manifest["started"] <= manifest["finished"]
    assert manifest["files"]["records.jsonl"] == str(folder / "records.jsonl")
    [event] = [json.loads(line) for line in (folder / "ledger.jsonl").read_text().splitlines()]
    assert event == {"record_id": Record("three").id, "stage": "filter", "action": "drop", "reason": "too short"}
    [dropped] = load_records(folder / "dropped.jsonl", [])
    assert dropped.lineage == [{"stage": "filter", "action": "drop", "reason": "too short",
                                "detail": {"words": 1}, "run": "r1"}]
    kept = load_records(folder / "records.jsonl", [])
    assert [e["action"] for r in kept for e in r.lineage] == ["keep", "keep"]


def test_beside_a_file_every_output_is_named_after_it(tmp_path):
    source = make_input(tmp_path)
    (tmp_path / "out").mkdir()
    result = keep_long(source, Cfg(), Outputs.beside(tmp_path / "out" / "kept.jsonl", "filter"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "kept.jsonl", "kept.ledger.jsonl", "kept.manifest.json", "kept.rejected.jsonl"]
    assert result.counts == {"in": 3, "out": 2} and result.reasons == {"drop: too short": 1}
    moved = Outputs.beside(tmp_path / "k2.jsonl", "filter", files={"dropped.jsonl": tmp_path / "elsewhere.jsonl"})
    keep_long(source, Cfg(), moved)
    assert len(load_records(tmp_path / "elsewhere.jsonl", [])) == 1


def test_an_output_never_replaces_an_input(tmp_path):
    source = make_input(tmp_path)
    before = source.read_bytes()
    with pytest.raises(InputError, match="is an input of this filter run"):
        keep_long(source, Cfg(), Outputs.beside(source, "filter"))
    assert source.read_bytes() == before


def test_one_file_given_as_two_outputs_is_refused_before_anything_is_written(tmp_path):
    source = make_input(tmp_path)
    out = tmp_path / "kept.jsonl"
    for files in ({"dropped.jsonl": out}, {"clusters.jsonl": out}, {"clusters.jsonl": tmp_path / "same.jsonl",
                                                                     "dropped.jsonl": tmp_path / "same.jsonl"}):
        with pytest.raises(InputError, match="named as two outputs"):
            keep_long(source, Cfg(), Outputs.beside(out, "filter", files=files))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    # A file asked for under a second name while the stage runs is refused too.
    stage = tmp_path / "stage"
    outputs = Outputs.folder(stage, "filter", files={"clusters.jsonl": stage / "records.jsonl"})
    outputs.start(Cfg(), [source], drops=False)
    outputs["clusters.jsonl"]
    with pytest.raises(InputError, match=r"records.jsonl: named as two outputs \(the clusters and the records\)"):
        outputs["records.jsonl"]


def test_rerun_skips_until_config_or_input_changes_and_force_redoes(tmp_path):
    source, calls = make_input(tmp_path), []
    run_dir = tmp_path / "runs" / "r"

    def run(config, exclude=frozenset(), force=False):
        stage = Stage(run_dir, "filter", config, [source], exclude)
        return run_stage(stage, lambda out: keep_long(source, config, out, calls), force=force).skipped

    assert not run(Cfg())
    assert run(Cfg())
    assert not run(Cfg(batch_size=64), frozenset({"batch_size"}))  # another exclude set: another key
    assert run(Cfg(batch_size=1), frozenset({"batch_size"}))  # batch size does not change results
    assert not run(Cfg(min_words=1))
    make_input(tmp_path, ("changed input",))
    assert not run(Cfg(min_words=1))
    assert run(Cfg(min_words=1))
    assert not run(Cfg(min_words=1), force=True)
    assert len(calls) == 5


def test_a_stage_killed_before_done_runs_again(tmp_path):
    source, calls = make_input(tmp_path), []
    run_dir = tmp_path / "runs" / "r"

    def crash(out):
        write_records(out["records.jsonl"], [Record("partial")])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(Stage(run_dir, "filter", Cfg(), [source]), crash)
    assert not (run_dir / "filter" / "DONE").exists()
    assert not run_stage(Stage(run_dir, "filter", Cfg(), [source]),
                         lambda out: keep_long(source, Cfg(), out, calls)).skipped
    assert calls == ["filter"]


def test_a_stage_with_a_corrupt_manifest_is_shown_as_unreadable_not_left_out(tmp_path, invoke):
    source = make_input(tmp_path)
    run_dir = tmp_path / "runs" / "r"
    for name in ("filter", "again"):
        run_stage(Stage(run_dir, name, Cfg(), [source]), lambda out: keep_long(source, Cfg(), out))
    (run_dir / "again" / "manifest.json").write_text("{broken")
    stages = {s["stage"]: s for s in stage_summaries(run_dir)}
    assert stages["filter"]["status"] == "done" and stages["again"]["status"] == "unreadable"
    assert "manifest.json: not a manifest" in stages["again"]["problem"]
    shown = invoke("runs", "show", run_dir)
    assert shown.exit_code == 0 and "again: unreadable: " in shown.output and "filter: done" in shown.output


def test_folder_fingerprint_changes_with_any_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"1")
    before = path_sha256(tmp_path / "m")
    (tmp_path / "m" / "a.bin").write_bytes(b"22")
    assert path_sha256(tmp_path / "m") != before


def test_the_ledger_records_drops_and_changes_with_reasons_and_keeps_without():
    ledger = Ledger("review", "r")
    record = ledger.edit(Record("Q", response="old"), "corrected", {"old": "old"}, response="new")
    kept = ledger.keep(Record("other"))
    ledger.drop(record, "discarded")
    assert record.response == "new" and record.lineage[-1]["run"] == "r"
    assert kept.lineage[-1]["action"] == "keep" and len(ledger.events) == 2
    assert dict(ledger.counts) == {"edit: corrected": 1, "drop: discarded": 1}
    assert [r.lineage[-1]["action"] for r in ledger.dropped] == ["drop"]


def test_finish_refuses_a_ledger_it_did_not_start(tmp_path):
    with pytest.raises(RuntimeError):
        Outputs.beside(tmp_path / "x.jsonl", "x").finish(Ledger("x"), {})


def test_bad_input_lines_are_quarantined_beside_the_output_and_a_clean_rerun_clears_them(tmp_path):
    source = make_input(tmp_path)
    source.write_text(source.read_text() + "{broken\n")

    def step(out):
        from workbench.core.io import Problem

        problems: list[Problem] = []
        ledger = out.start(Cfg(), [source], drops=False)
        write_records(out["records.jsonl"], load_records(source, problems))
        return out.finish(ledger, {}, problems)

    result = step(Outputs.beside(tmp_path / "out.jsonl", "check"))
    assert [(p.line, p.field) for p in result.problems] == [(4, "-")] and result.manifest["quarantined"] == 1
    [line] = [json.loads(x) for x in (tmp_path / "out.quarantine.jsonl").read_text().splitlines()]
    assert line["file"] == str(source) and line["line"] == 4 and line["raw"] == "{broken"
    assert not (tmp_path / "out.rejected.jsonl").exists()  # a stage that drops nothing leaves no dropped file
    make_input(tmp_path)
    assert step(Outputs.beside(tmp_path / "out.jsonl", "check")).problems == []
    assert not (tmp_path / "out.quarantine.jsonl").exists()

import json

import pytest
from pydantic import BaseModel, ConfigDict

from workbench.core.io import load_records, write_records
from workbench.core.records import Record
from workbench.core.runs import Ledger, Stage, fingerprint, run_stage


class Cfg(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_words: int = 2
    batch_size: int = 8


def make_input(tmp_path, texts=("one two", "three", "four five six")):
    path = tmp_path / "in.jsonl"
    write_records(path, [Record(t) for t in texts])
    return path


def keep_long(calls):
    def work(stage, ledger):
        calls.append(stage.name)
        kept, dropped = [], []
        for record in load_records(stage.inputs[0], []):
            if len(record.instruction.split()) >= stage.config.min_words:
                kept.append(record)
            else:
                dropped.append(ledger.drop(record, "too short", {"words": len(record.instruction.split())}))
        write_records(stage.path("records.jsonl"), kept)
        write_records(stage.path("dropped.jsonl"), dropped)
        return {"in": len(kept) + len(dropped), "out": len(kept)}
    return work


def test_stage_writes_manifest_ledger_outputs_and_done(tmp_path):
    source = make_input(tmp_path)
    outcome = run_stage(Stage(tmp_path / "runs" / "r1", "filter", Cfg(), [source]), keep_long([]))
    folder = tmp_path / "runs" / "r1" / "filter"
    assert not outcome.skipped
    assert sorted(p.name for p in folder.iterdir()) == ["DONE", "dropped.jsonl", "ledger.jsonl",
                                                        "manifest.json", "records.jsonl"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 3, "out": 2}
    assert manifest["ledger"] == {"drop: too short": 1}
    assert manifest["config"] == {"min_words": 2, "batch_size": 8}
    assert manifest["inputs"] == [{"path": str(source), "sha256": fingerprint(source)}]
    assert manifest["versions"]["transformers"] and manifest["started"] <= manifest["finished"]
    [event] = [json.loads(line) for line in (folder / "ledger.jsonl").read_text().splitlines()]
    assert event == {"record_id": Record("three").id, "stage": "filter", "action": "drop", "reason": "too short"}
    [dropped] = load_records(folder / "dropped.jsonl", [])
    assert dropped.lineage == [{"stage": "filter", "action": "drop", "reason": "too short",
                                "detail": {"words": 1}, "run": "r1"}]


def test_rerun_skips_until_config_or_input_changes_and_force_redoes(tmp_path):
    source, calls = make_input(tmp_path), []
    run_dir = tmp_path / "runs" / "r"
    assert not run_stage(Stage(run_dir, "filter", Cfg(), [source]), keep_long(calls)).skipped
    assert run_stage(Stage(run_dir, "filter", Cfg(), [source]), keep_long(calls)).skipped
    # Batch size does not change results: excluded from the key, still skipped.
    assert run_stage(Stage(run_dir, "filter", Cfg(batch_size=64), [source], exclude=frozenset({"batch_size"})),
                     keep_long(calls)).skipped is False  # first run with that exclude set: new key
    assert run_stage(Stage(run_dir, "filter", Cfg(batch_size=1), [source], exclude=frozenset({"batch_size"})),
                     keep_long(calls)).skipped
    assert not run_stage(Stage(run_dir, "filter", Cfg(min_words=1), [source]), keep_long(calls)).skipped
    make_input(tmp_path, ("changed input",))
    assert not run_stage(Stage(run_dir, "filter", Cfg(min_words=1), [source]), keep_long(calls)).skipped
    assert run_stage(Stage(run_dir, "filter", Cfg(min_words=1), [source]), keep_long(calls)).skipped
    assert not run_stage(Stage(run_dir, "filter", Cfg(min_words=1), [source]), keep_long(calls), force=True).skipped
    assert len(calls) == 5


def test_a_stage_killed_before_done_runs_again(tmp_path):
    source, calls = make_input(tmp_path), []
    run_dir = tmp_path / "runs" / "r"

    def crash(stage, ledger):
        write_records(stage.path("records.jsonl"), [Record("partial")])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(Stage(run_dir, "filter", Cfg(), [source]), crash)
    assert not (run_dir / "filter" / "DONE").exists()
    assert not run_stage(Stage(run_dir, "filter", Cfg(), [source]), keep_long(calls)).skipped
    assert calls == ["filter"]


def test_folder_fingerprint_changes_with_any_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"1")
    before = fingerprint(tmp_path / "m")
    (tmp_path / "m" / "a.bin").write_bytes(b"2")
    assert fingerprint(tmp_path / "m") != before


def test_ledger_counts_edits_and_drops():
    ledger = Ledger("review", "r")
    record = ledger.edit(Record("Q", response="old"), "corrected", {"old": "old"}, response="new")
    ledger.drop(record, "discarded")
    assert record.response == "new" and record.lineage[-1]["run"] == "r"
    assert dict(ledger.counts) == {"edit: corrected": 1, "drop: discarded": 1}

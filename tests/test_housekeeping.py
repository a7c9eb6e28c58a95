"""`runs list` / `runs show` and `doctor`."""

import json


def test_runs_list_and_show(tmp_path, invoke, sample_run):
    sample_run(tmp_path / "runs")
    (tmp_path / "runs" / "r1" / "train" / "DONE").unlink()  # as if a rerun of this stage was killed
    listed = invoke(*["runs", "list", "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert listed.exit_code == 0, listed.output
    [run] = json.loads(listed.output)
    assert run["run"] == "r1" and run["stages"] == 2 and run["done"] == 1
    shown = invoke(*["runs", "show", "r1", "--runs-dir", str(tmp_path / "runs"), "--json"])
    stages = json.loads(shown.output)["stages"]
    assert [s["stage"] for s in stages] == ["filter", "train"]
    assert stages[0]["counts"] == {"in": 3, "out": 1} and stages[0]["ledger"] == {"drop: too short": 2}
    assert stages[0]["files"] == ["dropped.jsonl", "records.jsonl"] and stages[1]["status"] == "incomplete"
    text = invoke(*["runs", "show", "r1", "--runs-dir", str(tmp_path / "runs")])
    assert "filter: done" in text.output and "2  drop: too short" in text.output and "train: incomplete" in text.output
    missing = invoke(*["runs", "show", "nope", "--runs-dir", str(tmp_path / "runs")])
    assert missing.exit_code == 1 and "no such run folder" in missing.output


def test_doctor_checks_for_real_and_names_fixes(monkeypatch, invoke, tmp_path):
    from annotation import server

    result = invoke("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert {"python", "torch", "cuda", "8-bit", "argilla server", "redis", "model hub"} <= set(checks)
    assert checks["8-bit"]["status"] == "ok" and "really quantized" in checks["8-bit"]["detail"]
    assert checks["model hub"]["status"] == "warn"  # the tests run offline
    # What `workbench screen` will do with its default scorer here (no detoxify weights can be downloaded).
    detoxify = checks["detoxify weights"]
    if detoxify["status"] == "warn":
        assert "`workbench screen` (detoxify by default) stops with an error" in detoxify["detail"]
        assert "--scorer profanity-check" in detoxify["fix"]
        source = tmp_path / "one.jsonl"
        source.write_text('{"instruction": "Which course suits me?", "response": "Data Science."}\n')
        screened = invoke("screen", source, "-o", tmp_path / "screened.jsonl")
        assert screened.exit_code == 1 and "detoxify (original) did not load" in screened.output
    assert result.exit_code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)

    def missing():
        raise server.ServerError("argilla-server's environment is not built")

    monkeypatch.setattr(server, "server_python", missing)
    result = invoke("doctor", "--json")
    broken = {c["name"]: c for c in json.loads(result.output)}["argilla server"]
    assert result.exit_code == 1 and broken["status"] == "fail" and "workbench annotate setup" in broken["fix"]

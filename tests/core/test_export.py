"""`data export`: Dolly, Alpaca and ShareGPT files with a dataset card; licences; the hub push offline."""

import json

from workbench.core.io import write_records
from workbench.core.records import Record


def records():
    own = Record("What does the Nursing BSc cost?", response="980 EUR per semester.", category="closed_qa",
                 source="self-instruct")
    edited = Record("Name a module.", "The modules are A and B.", "A.", category="information_extraction",
                    source="from-docs").with_event("review", "edit", "corrected by review")
    alpaca = Record("Give three tips for sleeping well.", response="1. Dark room\n2. No screens\n3. Same time",
                    category="brainstorming", source="alpaca", meta={"license": "CC BY-NC 4.0"})
    return [own, edited, alpaca]


def test_formats_and_the_card(tmp_path, invoke, sample_run):
    data = tmp_path / "curated.jsonl"
    write_records(data, records())
    run = sample_run(tmp_path / "runs")
    result = invoke("data", "export", data, "--format", "alpaca", "-o", tmp_path / "a.json", "--run", run)
    assert result.exit_code == 0, result.output
    assert "non-commercial licence is mixed in (CC BY-NC 4.0)" in result.output
    alpaca = json.loads((tmp_path / "a.json").read_text())
    assert alpaca[1] == {"instruction": "Name a module.", "input": "The modules are A and B.", "output": "A."}
    card = (tmp_path / "a.README.md").read_text()
    assert "3 records in alpaca format. 1 were corrected" in card and "Non-commercial licence mixed in" in card
    assert "| alpaca | 1 |" in card and "| filter | in 3, out 1 | 2 drop: too short |" in card
    invoke("data", "export", data, "--format", "dolly", "-o", tmp_path / "d.jsonl")
    dolly = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert dolly[0] == {"instruction": "What does the Nursing BSc cost?", "context": "",
                        "response": "980 EUR per semester.", "category": "closed_qa"}
    invoke("data", "export", data, "--format", "sharegpt", "-o", tmp_path / "s.jsonl")
    turns = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[1])["conversations"]
    assert turns == [{"from": "human", "value": "Name a module.\n\nThe modules are A and B."},
                     {"from": "gpt", "value": "A."}]
    bad = invoke("data", "export", data, "--format", "csv", "-o", tmp_path / "x")
    assert bad.exit_code == 1 and "unknown format 'csv'" in bad.output


def test_push_to_hub_is_a_clear_error_offline(tmp_path, invoke):
    data = tmp_path / "curated.jsonl"
    write_records(data, records())
    result = invoke("data", "export", data, "--format", "dolly", "-o", tmp_path / "d.jsonl",
                    "--push-to-hub", "me/advisor")
    assert result.exit_code == 1 and "cannot push to me/advisor: HF_HUB_OFFLINE=1" in result.output
    assert (tmp_path / "d.jsonl").exists() and (tmp_path / "d.README.md").exists()  # written before the push

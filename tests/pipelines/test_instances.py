import pytest

from pipelines.instances import (
    InstancesConfig,
    filter_instances,
    parse_classification_instances,
    parse_generation_instances,
    parse_input_output,
    run,
)
from workbench.core.catalog import SEED_TASKS
from workbench.core.io import load_records
from workbench.core.models import GenerationParams, get_model
from workbench.core.records import Record
from workbench.core.runs import Outputs


def test_parse_input_output():
    assert parse_input_output("Input: The fee is 980 EUR.\nOutput: 980 EUR") == ("The fee is 980 EUR.", "980 EUR")
    assert parse_input_output("Just an answer.") == ("", "Just an answer.")
    assert parse_input_output("Input: a\nOutput: b\nInput: c\nOutput: d") == ("a", "b")


def test_parse_generation_instances_examples_and_truncation():
    text = "Example 1\nInput: x\nOutput: y\nExample 2\nInput: z\nOutput: w"
    assert parse_generation_instances(text, "stop") == [("x", "y"), ("z", "w")]
    assert parse_generation_instances(text, "length") == [("x", "y")]
    assert parse_generation_instances("Output: only an output", "stop") == [("", "only an output")]
    assert parse_generation_instances("no markers at all", "stop") == []


def test_parse_classification_instances():
    text = " Positive\nInput: I loved the open day.\n\nClass label: Negative\nInput: The bus never came."
    assert parse_classification_instances("Class label:" + text, "stop") == [
        ("I loved the open day.", "Positive"), ("The bus never came.", "Negative")]
    assert parse_classification_instances("Class label:" + text, "length") == [("I loved the open day.", "Positive")]
    assert parse_classification_instances("nothing", "stop") == []


@pytest.mark.parametrize("instances, kept, reason", [
    ([("same", "same")], [], "input equals output"),
    ([("x", "")], [], "empty output"),
    ([("Input:", "y")], [], "ends with ':' (unfinished)"),
    ([("x", "y:")], [], "ends with ':' (unfinished)"),
    ([("x", "y"), ("x", "z")], [], "same input, different outputs"),
    ([("x", "y"), ("x", "y"), ("", "a"), ("", "b")], [("x", "y"), ("", "a"), ("", "b")], None),
])
def test_filter_instances(instances, kept, reason):
    result, reasons = filter_instances(instances)
    assert result == kept
    assert (reason in reasons) if reason else not reasons


def test_run_with_the_tiny_generator(tiny_generator, seeds, tmp_path, records_file):
    model = get_model(str(tiny_generator))
    tasks = [s for s in seeds if s.category in ("classification", "open_qa")][:6]
    tasks.append(Record("Tell me which of these programmes is taught in German.", source="generated"))
    config = InstancesConfig(sampling=GenerationParams(max_new_tokens=80, stop=("Task:",)))
    out = Outputs.beside(tmp_path / "out.jsonl", "instances", allow_empty=True)  # the untrained model may keep none
    result = run(model, records_file(tasks), SEED_TASKS, config, out)
    kept, rejected = load_records(tmp_path / "out.jsonl", []), load_records(tmp_path / "out.rejected.jsonl", [])
    assert result.counts["kept"] == len(kept) and result.counts["rejected"] == len(rejected)
    parents = {e["detail"]["parent"] for r in kept for e in r.lineage if e["stage"] == "instances"}
    parents |= {r.id for r in rejected}
    assert parents == {t.id for t in tasks}  # every task either gave instances or is in the rejected file
    for record in kept:
        created = [e for e in record.lineage if e["stage"] == "instances"][0]["detail"]
        assert record.response and created["model"] == str(tiny_generator)
        assert created["classification"] == record.meta["is_classification"]
    asked = [e["detail"]["classification_from"] for r in kept + rejected
             for e in r.lineage if e["stage"] == "instances"]
    assert "record" in asked
    per_parent: dict[str, int] = {}
    for record in kept:
        parent = [e for e in record.lineage if e["stage"] == "instances"][0]["detail"]["parent"]
        per_parent[parent] = per_parent.get(parent, 0) + 1
    assert max(per_parent.values(), default=0) <= config.max_instances

import json
import os

import pytest

from workbench.core.io import (
    Problem,
    atomic_open,
    from_dataset,
    load_records,
    read_records,
    to_dataset,
    validate_files,
    write_problems,
    write_records,
)
from workbench.core.records import Record


@pytest.mark.parametrize("name, line, field, reason", [
    ("invalid_json.jsonl", 2, "-", "invalid JSON"),
    ("truncated.jsonl", 2, "-", "truncated last line"),
    ("not_object.jsonl", 2, "-", "expected a JSON object, got an array"),
    ("missing_instruction.jsonl", 2, "instruction", "missing"),
    ("empty_instruction.jsonl", 2, "instruction", "empty"),
    ("wrong_type.jsonl", 2, "response", "expected a string, got number"),
    ("unknown_category.jsonl", 2, "category", "did you mean 'brainstorming'"),
    ("invalid_utf8.jsonl", 2, "-", "invalid UTF-8 at byte 21"),
    ("nul_byte.jsonl", 2, "-", "NUL byte at column 21"),
    ("nul_escape.jsonl", 2, "instruction", "NUL character"),
    ("duplicate_id.jsonl", 2, "id", "duplicate id 'same' (first at"),
    ("unknown_field.jsonl", 2, "respones", "did you mean 'response'"),
])
def test_each_bad_kind_is_reported_with_file_line_field_and_the_good_line_is_kept(name, line, field, reason, fixtures):
    problems: list[Problem] = []
    records = load_records(fixtures / "bad" / name, problems)
    assert len(records) == 1  # line 1 of every bad fixture is good
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.file, problem.line, problem.field) == (str(fixtures / "bad" / name), line, field)
    assert reason in problem.reason
    assert str(problem).startswith(f"{fixtures / 'bad' / name}:{line}: {field}: ")


def test_invalid_utf8_raw_keeps_the_bytes_as_escapes(fixtures):
    problems: list[Problem] = []
    load_records(fixtures / "bad" / "invalid_utf8.jsonl", problems)
    assert "caf\\xe9" in problems[0].raw


def test_empty_file_is_valid_with_zero_records(fixtures):
    problems: list[Problem] = []
    assert load_records(fixtures / "bad" / "empty.jsonl", problems) == [] and problems == []


def test_bom_is_accepted(fixtures):
    problems: list[Problem] = []
    [record] = load_records(fixtures / "bad" / "bom.jsonl", problems)
    assert problems == [] and record.instruction == "starts with a byte-order mark"


def test_size_limit(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"instruction": "q", "response": "x" * 2000}) + "\n")
    problems: list[Problem] = []
    assert load_records(path, problems, max_field_bytes=1000) == []
    assert problems[0].field == "response" and "2,000 bytes" in problems[0].reason


def test_validate_files_catches_ids_repeated_across_files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"instruction": "same"}\n')
    b.write_text('{"instruction": "same"}\n{"instruction": "other"}\n')
    problems, valid = validate_files([a, b])
    assert valid == 2
    assert [(p.file, p.line) for p in problems] == [(str(b), 1)]
    assert f"exact duplicate of {a}:1" in problems[0].reason


def test_quarantine_file_has_file_line_field_reason_raw(tmp_path, fixtures):
    problems: list[Problem] = []
    load_records(fixtures / "bad" / "invalid_json.jsonl", problems)
    write_problems(tmp_path / "q.jsonl", problems)
    [row] = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert set(row) == {"file", "line", "field", "reason", "raw"}
    assert row["raw"] == '{"instruction": "broken", "response": }'


def test_reading_streams(tmp_path, fixtures):
    problems: list[Problem] = []
    iterator = read_records(fixtures / "good_records.jsonl", problems)
    assert next(iterator).instruction == "Name a river."


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "out.jsonl"
    write_records(path, [Record("old")])
    before = path.read_bytes()

    def failing():
        yield Record("new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_records(path, failing())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temp file left behind


def test_atomic_open_renames_only_on_success(tmp_path):
    path = tmp_path / "x.txt"
    with atomic_open(path) as f:
        f.write("hello")
        assert not path.exists()
    assert path.read_text() == "hello"


def test_output_is_byte_identical_for_the_same_input(tmp_path, fixtures):
    problems: list[Problem] = []
    records = load_records(fixtures / "good_records.jsonl", problems)
    write_records(tmp_path / "1.jsonl", records)
    write_records(tmp_path / "2.jsonl", load_records(tmp_path / "1.jsonl", problems))
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()


def test_parquet_round_trip_stores_nested_fields_as_json_strings(tmp_path):
    import pyarrow.parquet as pq

    records = [Record("Q1", "C", "A", "open_qa", "seed", scores={"toxicity_max": 0.25}, meta={"license": "x"}),
               Record("Q2").with_event("screen", "edit", "pii", detail={"found": ["email"]})]
    write_records(tmp_path / "r.parquet", records)
    table = pq.read_table(tmp_path / "r.parquet")
    assert str(table.schema.field("meta").type) == "string"
    assert json.loads(table.column("scores")[0].as_py()) == {"toxicity_max": 0.25}
    problems: list[Problem] = []
    assert load_records(tmp_path / "r.parquet", problems) == records and problems == []


def test_dataset_round_trip():
    records = [Record("Q", response="A", category="closed_qa", meta={"n": 1})]
    dataset = to_dataset(records)
    assert dataset.column_names == ["id", "instruction", "context", "response", "category", "source",
                                    "lineage", "scores", "meta"]
    problems: list[Problem] = []
    assert list(from_dataset(dataset, problems)) == records

import time

import pytest

from workbench.core.errors import HubUnavailableError, InputError
from workbench.core.importers import ImportConfig, guess_format, import_records, parse_field_map
from workbench.core.io import Problem


def run(path, **config):
    problems: list[Problem] = []
    return import_records(path, ImportConfig(**config), problems), problems


def test_dolly_keeps_good_rows_reports_empty_instruction_and_drops_the_exact_duplicate(fixtures):
    result, problems = run(fixtures / "dolly.jsonl")
    assert result.format == "dolly"
    assert len(result.records) == 6
    where = [(p.line, p.field) for p in problems]
    assert where == [(5, "-"), (7, "instruction")]
    assert "exact duplicate of" in problems[0].reason and "dolly.jsonl:3" in problems[0].reason
    first = result.records[0]
    assert first.category == "closed_qa" and first.source == "dolly"
    assert first.meta == {"license": "CC BY-SA 3.0"}
    assert first.lineage[0]["detail"] == {"format": "dolly", "file": "dolly.jsonl", "line": 1}


def test_same_content_imported_twice_gets_the_same_ids(fixtures):
    first, _ = run(fixtures / "dolly.jsonl")
    second, _ = run(fixtures / "dolly.jsonl")
    assert [r.id for r in first.records] == [r.id for r in second.records]


def test_alpaca_json_array_with_line_numbers(fixtures):
    result, problems = run(fixtures / "alpaca.json")
    assert result.format == "alpaca"
    assert [r.instruction for r in result.records] == [
        "Give three tips for staying healthy.", "Translate the sentence into French.",
        "Classify the animal as a mammal or a bird."]
    assert result.records[1].context == "The library opens at nine."
    assert result.records[1].response == "La bibliothèque ouvre à neuf heures."
    assert result.records[0].meta["license"] == "CC BY-NC 4.0" and result.records[0].category is None
    [problem] = problems
    assert (problem.line, problem.field) == (12, "instruction")  # the third object starts on line 12


def test_alpaca_jsonl_is_guessed_too(fixtures):
    result, problems = run(fixtures / "alpaca.jsonl")
    assert result.format == "alpaca" and len(result.records) == 2 and not problems


def test_oasst1_picks_the_rank_0_reply_of_each_initial_prompt(fixtures):
    result, problems = run(fixtures / "oasst1_messages.jsonl")
    assert result.format == "oasst1"
    by_message = {r.meta["oasst_message_id"]: r for r in result.records}
    assert set(by_message) == {"m1", "m2", "m3"}
    assert by_message["m1"].meta["oasst_reply_id"] == "m1b"  # rank 0 among three ranked replies
    assert by_message["m2"].meta["oasst_reply_id"] == "m2b"  # the rank-0 reply was deleted
    assert by_message["m1"].meta["license"] == "Apache-2.0" and by_message["m1"].source == "oasst1"
    assert result.skipped == {"oasst1: prompt deleted or rejected in review": 1,
                              "oasst1: prompt without a usable assistant reply": 1}
    assert [(p.field, p.line) for p in problems] == [("role", 15)]


def test_oasst1_language_filter(fixtures):
    result, _ = run(fixtures / "oasst1_messages.jsonl", lang="de")
    assert [r.meta["oasst_message_id"] for r in result.records] == ["m3"]
    assert result.skipped["oasst1: language not de"] == 3  # m1, m2 and the unanswered m5


def test_oasst1_trees_export_gives_the_same_pair(fixtures):
    trees, _ = run(fixtures / "oasst1_trees.jsonl")
    messages, _ = run(fixtures / "oasst1_messages.jsonl")
    [record] = trees.records
    assert record.meta["oasst_reply_id"] == "m1b"
    assert record.id == next(r.id for r in messages.records if r.meta["oasst_message_id"] == "m1")


def test_lang_is_refused_for_other_formats(fixtures):
    with pytest.raises(InputError, match="OASST1 conversations only"):
        run(fixtures / "dolly.jsonl", lang="en")


def test_our_jsonl_keeps_explicit_ids(fixtures):
    result, problems = run(fixtures / "good_records.jsonl")
    assert result.format == "jsonl" and not problems
    assert result.records[1].id == "custom-id-1"


def test_map_renames_fields_and_keeps_the_others_in_meta(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "Q?", "answer": "A.", "topic": "fees"}\n')
    result, problems = run(path, field_map=parse_field_map("instruction=question,response=answer"), source="faq")
    [record] = result.records
    assert (record.instruction, record.response, record.source) == ("Q?", "A.", "faq")
    assert record.meta == {"topic": "fees"}


def test_map_errors_name_the_source_field(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "", "answer": "A."}\n')
    _, problems = run(path, field_map={"instruction": "question", "response": "answer"})
    assert [(p.field, p.reason) for p in problems] == [("question", "empty")]


def test_parse_field_map_rejects_bad_entries():
    with pytest.raises(InputError, match="not a record field"):
        parse_field_map("question=instruction")
    with pytest.raises(InputError, match="OURS=THEIRS"):
        parse_field_map("instruction")


def test_folder_reads_every_file(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"instruction": "a", "input": "", "output": "x"}\n')
    (tmp_path / "b.jsonl").write_text('{"instruction": "b", "input": "", "output": "y"}\n')
    result, _ = run(tmp_path)
    assert [r.instruction for r in result.records] == ["a", "b"]


def test_parquet_source(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"instruction": "P", "context": "", "response": "R", "category": "open_qa"}]) \
        .to_parquet(str(tmp_path / "d.parquet"))
    result, _ = run(tmp_path / "d.parquet")
    assert result.format == "dolly" and result.records[0].instruction == "P"


def test_hub_id_fails_fast_offline():
    clock = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="dolly-15k: not a local path, and loading it from the hub failed"):
        run("databricks/databricks-dolly-15k")
    assert time.perf_counter() - clock < 30


def test_missing_path_is_a_clear_error():
    with pytest.raises(InputError, match="no such file or folder"):
        run("does-not-exist.jsonl")


@pytest.mark.parametrize("keys, expected", [
    ({"instruction", "context", "response", "category"}, "dolly"),
    ({"instruction", "input", "output"}, "alpaca"),
    ({"message_id", "parent_id", "role", "text"}, "oasst1"),
    ({"instruction", "response", "id", "meta"}, "jsonl"),
])
def test_guess_format(keys, expected):
    assert guess_format([dict.fromkeys(keys, "")], {}) == expected


def test_our_own_parquet_imports_with_its_nested_fields(tmp_path):
    from workbench.core.io import write_records
    from workbench.core.records import Record

    original = [Record("Q", response="A", category="open_qa", source="seed", meta={"license": "mine"})
                .with_event("screen", "edit", "pii")]
    write_records(tmp_path / "r.parquet", original)
    result, problems = run(tmp_path / "r.parquet")
    assert not problems and result.format == "jsonl"
    [record] = result.records
    assert record.meta == {"license": "mine"} and record.lineage[0]["stage"] == "screen"
    assert record.lineage[-1]["stage"] == "import"


def test_a_format_or_map_whose_fields_the_file_lacks_is_an_error_not_an_empty_import(fixtures, tmp_path, invoke):
    with pytest.raises(InputError, match=r"read as alpaca, but no row of the first 8 has the field\(s\) 'output'"):
        import_records(fixtures / "dolly.jsonl", ImportConfig(format="alpaca"), [])
    result = invoke("data", "import", fixtures / "dolly.jsonl", "--format", "alpaca", "-o", tmp_path / "a.jsonl")
    assert result.exit_code == 1 and "Hint: it looks like dolly: pass --format dolly" in result.output
    result = invoke("data", "import", fixtures / "dolly.jsonl", "--map", "response=no_such_field",
                    "-o", tmp_path / "b.jsonl")
    assert result.exit_code == 1 and "'no_such_field'" in result.output and "check --map" in result.output
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "b.jsonl").exists()

import json

import pytest

from workbench.core.records import CATEGORIES, Record, RecordError, check_record_dict, record_id


def test_id_is_sha256_prefix_over_normalised_fields():
    import hashlib

    expected = hashlib.sha256(b"Name a river.\x1f\x1fThe Rhine.").hexdigest()[:16]
    assert record_id("  Name a river. ", "", "The Rhine.\n") == expected
    assert Record("Name a river.", response="The Rhine.").id == expected


def test_id_uses_nfc_so_composed_and_decomposed_text_agree():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed
    assert record_id(composed) == record_id(decomposed)


def test_id_separates_fields():
    # Without a separator "ab" + "c" and "a" + "bc" would collide.
    assert record_id("ab", "c") != record_id("a", "bc")


def test_explicit_id_is_kept_and_edits_do_not_change_it():
    record = Record.from_dict({"id": "my-id", "instruction": "Q", "response": "A"})
    assert record.id == "my-id"
    edited = record.with_event("review", "edit", "corrected", detail={"old": "A"}, response="A, corrected")
    assert edited.id == "my-id"
    assert edited.response == "A, corrected"
    assert edited.lineage == [{"stage": "review", "action": "edit", "reason": "corrected",
                               "detail": {"old": "A"}, "run": None}]
    assert record.lineage == []  # the original is untouched


def test_json_has_fixed_field_order_and_round_trips():
    record = Record("Q", "C", "A", "open_qa", "seed", scores={"toxicity_max": 0.01}, meta={"license": "x"})
    line = record.to_json()
    assert list(json.loads(line)) == ["id", "instruction", "context", "response", "category", "source",
                                      "lineage", "scores", "meta"]
    assert Record.from_dict(json.loads(line)) == record


def test_every_dolly_category_is_kept_and_others_are_refused(fixtures):
    """A record may carry any of Dolly-15k's categories (the Dolly fixture's come through the importer as they are)
    and none other unless asked."""
    from workbench.core.importers import ImportConfig, import_records

    for category in CATEGORIES:
        assert check_record_dict({"instruction": "q", "category": category}) == []
        assert Record.from_dict(json.loads(Record("q", category=category).to_json())).category == category
    [(field, reason)] = check_record_dict({"instruction": "q", "category": "poetry"})
    assert field == "category" and all(c in reason for c in CATEGORIES)
    imported = import_records(fixtures / "dolly.jsonl", ImportConfig(), [])
    dolly = [json.loads(line) for line in (fixtures / "dolly.jsonl").read_text().splitlines() if line.strip()]
    given = {row["instruction"]: row["category"] for row in dolly}
    assert all(r.category == given[r.instruction] for r in imported.records)
    assert len({r.category for r in imported.records}) >= 5


@pytest.mark.parametrize("obj, field, reason", [
    ({}, "instruction", "missing"),
    ({"instruction": ""}, "instruction", "empty"),
    ({"instruction": 3}, "instruction", "expected a string, got number"),
    ({"instruction": "q", "context": ["x"]}, "context", "expected a string, got array"),
    ({"instruction": "q", "category": "summarisation"}, "category", "did you mean 'summarization'"),
    ({"instruction": "q", "scores": {"tox": "high"}}, "scores.tox", "expected a finite number"),
    ({"instruction": "q", "scores": {"tox": True}}, "scores.tox", "expected a finite number"),
    ({"instruction": "q", "meta": []}, "meta", "expected an object"),
    ({"instruction": "q", "lineage": [{"stage": "x"}]}, "lineage[0]", "'stage' and 'action'"),
    ({"instruction": "q", "id": " "}, "id", "empty"),
    ({"instruction": "q", "respnse": "a"}, "respnse", "did you mean 'response'"),
    ({"instruction": "a\x00b"}, "instruction", "NUL"),
    ([1, 2], "-", "expected a JSON object, got array"),
])
def test_check_record_dict_names_field_and_reason(obj, field, reason):
    problems = check_record_dict(obj)
    assert any(f == field and reason in r for f, r in problems), problems


def test_size_limit_and_unknown_categories_allowed_on_request():
    assert check_record_dict({"instruction": "x" * 11}, max_field_bytes=10) == [
        ("instruction", "11 bytes, over the limit of 10")]
    assert check_record_dict({"instruction": "q", "category": "poetry"}, allow_unknown_categories=True) == []
    with pytest.raises(RecordError):
        Record.from_dict({"instruction": "q", "category": "poetry"})

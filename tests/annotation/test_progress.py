"""`annotate progress`: the lecturer's view of each student's review work."""

import json

from annotation.progress import class_progress


def _rows():
    """Ten records, four students: a, b and c vote alike, d votes against them and answers every 2 seconds; b
    presses Discard on record 9 and leaves a draft on record 8."""
    rows = []
    for i in range(10):
        decision = "keep" if i % 3 else "discard"
        responses = []
        for user, step in (("a", 30), ("b", 40), ("c", 35), ("d", 2)):
            vote = decision if user != "d" else ("discard" if decision == "keep" else "keep")
            status = "submitted"
            if user == "b" and i == 9:
                status, vote = "discarded", None
            if user == "b" and i == 8:
                status = "draft"
            responses.append({"user_id": user, "username": f"student-{user}", "status": status,
                              "values": {"decision": vote} if vote else {},
                              "updated_at": f"2026-12-07T10:{(i * step) // 60:02d}:{(i * step) % 60:02d}"})
        rows.append({"id": f"r{i}", "responses": responses})
    return rows


def test_each_student_is_compared_with_the_others_and_the_odd_one_is_flagged():
    students = {s.username: s for s in class_progress(_rows())}
    a, b, d = students["student-a"], students["student-b"], students["student-d"]
    assert (b.submitted, b.discarded, b.drafts) == (8, 1, 1)
    # record 8: b left a draft, so the others (c and d) split: nothing to compare a with there
    assert a.agreement == 1.0 and a.compared == 9 and a.seconds_per_record == 30
    # d disagrees with the others' majority on every record, and answers in 2 s
    assert d.agreement == 0.0 and d.kappa is not None and d.kappa < 0 and d.seconds_per_record == 2
    assert len(d.flags) == 2 and "agrees with the others on 0%" in d.flags[0] and "2.0 s per record" in d.flags[1]
    assert not a.flags and not b.flags


def test_the_command_reads_an_export_file(tmp_path, invoke):
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(row) + "\n" for row in _rows()))
    result = invoke("annotate", "progress", "--from", export)
    assert result.exit_code == 0, result.output
    assert "Look at student-d: agrees with the others on 0% of records" in " ".join(result.output.split())
    as_json = json.loads(invoke("annotate", "progress", "--from", export, "--json").output)
    assert [s["username"] for s in as_json] == ["student-a", "student-b", "student-c", "student-d"]

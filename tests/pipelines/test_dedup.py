"""The dedup stage on record files, as `workbench dedup` and a recipe run it: kept and dropped records, clusters,
lineage and ledger, references, workers, several files as one set, bad lines quarantined."""

import json
from itertools import count

import pytest

from pipelines.dedup import DedupConfig, run
from workbench.core.io import load_records, write_records
from workbench.core.records import Record
from workbench.core.runs import Outputs

_runs = count()


def dedup(tmp_path, records, config=None, references=(), run_name=None):
    """The stage on RECORDS (and REFERENCES) written to files; returns (kept, dropped, clusters, result)."""
    folder = tmp_path / f"run{next(_runs)}"
    folder.mkdir()
    source = folder / "in.jsonl"
    write_records(source, records)
    refs = []
    if references:
        refs = [folder / "refs.jsonl"]
        write_records(refs[0], references)
    out = Outputs.folder(folder / "dedup", "dedup", run=run_name)
    result = run([source], config or DedupConfig(), out, refs)
    clusters = [json.loads(line) for line in out["clusters.jsonl"].read_text().splitlines()]
    return load_records(out["records.jsonl"], []), load_records(out["dropped.jsonl"], []), clusters, result


@pytest.mark.parametrize("changes", [1, 2, 3, 4, 6])
def test_pairs_just_above_and_below_the_threshold(tmp_path, changes, near):
    other = near.edit(near.BASE, changes)
    similarity = near.exact(near.BASE, other)
    kept, *_ = dedup(tmp_path, [Record(near.BASE), Record(other)], DedupConfig(threshold=0.6))
    assert (len(kept) == 1) == (similarity >= 0.6), similarity


def test_empty_and_short_texts_are_never_duplicates_of_everything(tmp_path):
    records = [Record("x", context=""), Record(".", context="!"), Record("Fees?"), Record("fees")]
    kept, *_ = dedup(tmp_path, records)
    # "Fees?" and "fees" have the same single shingle; "x" differs; "." has no shingles at all.
    assert [r.instruction for r in kept] == ["x", ".", "Fees?"]


def test_unicode_variants_are_duplicates(tmp_path):
    records = [Record("Ｆｕｌｌ-width ＢＩＳ fees for the ﬁrst semester"),
               Record("Full-width BIS fees for the first semester")]
    assert len(dedup(tmp_path, records)[0]) == 1


def test_clusters_lineage_and_ledger(tmp_path, near):
    a, b, c = near.BASE, near.edit(near.BASE, 1), near.edit(near.edit(near.BASE, 1), 2)
    records = [Record(a), Record("something else entirely about nursing placements"), Record(b), Record(c)]
    kept, dropped, removed, result = dedup(tmp_path, records, run_name="r")
    assert [r.id for r in kept] == [records[0].id, records[1].id]
    assert kept[0].meta["dedup_cluster_size"] == 3 and kept[1].meta["dedup_cluster_size"] == 1
    assert kept[0].lineage[-1] == {"stage": "dedup", "action": "keep", "reason": None,
                                   "detail": {"cluster_size": 3}, "run": "r"}
    assert {line["id"] for line in removed} == {records[2].id, records[3].id}
    for line in removed:
        assert line["duplicate_of"] == records[0].id and line["similarity"] >= 0.7
        partner = next(r for r in records if r.id == line["linked_to"])
        removed_record = next(r for r in records if r.id == line["id"])
        similarity = near.exact(removed_record.instruction, partner.instruction)
        assert line["similarity"] == pytest.approx(similarity, abs=1e-6)
    assert all(r.lineage[-1]["reason"] == "near-duplicate" for r in dropped)
    assert result.reasons == {"drop: near-duplicate": 2} and result.counts["removed"] == 2
    events = [json.loads(line) for line in open(result.files["ledger.jsonl"])]
    assert {e["record_id"] for e in events} == {records[2].id, records[3].id}


@pytest.mark.parametrize("keep, expected", [("first", 0), ("longest", 1), ("seed", 1)])
def test_keep_strategies(tmp_path, keep, expected, near):
    longer = near.BASE + " and more words"
    records = [Record(near.BASE, source="generated"), Record(longer, source="seed")]
    kept, *_ = dedup(tmp_path, records, DedupConfig(keep=keep))
    assert [r.id for r in kept] == [records[expected].id]


def test_against_references_removes_matches_without_deduplicating_references(tmp_path, near):
    references = [Record(near.BASE, source="seed"), Record(near.edit(near.BASE, 1), source="seed")]
    records = [Record(near.edit(near.BASE, 2)), Record("a completely different question about the nursing allowance")]
    kept, dropped, removed, _ = dedup(tmp_path, records, references=references)
    assert [r.id for r in kept] == [records[1].id]
    assert removed[0]["duplicate_of"] in {r.id for r in references}
    assert dropped[0].lineage[-1]["reason"] == "near-duplicate of a reference"


def test_deterministic_and_workers_change_nothing(tmp_path, near):
    records = [Record(near.edit(near.BASE, i % 5) + f" number {i % 40}", source="seed" if i % 7 == 0 else "generated")
               for i in range(120)] + [Record(f"unrelated text number {i} here") for i in range(30)]
    one = dedup(tmp_path, records, DedupConfig(keep="seed"))
    again = dedup(tmp_path, records, DedupConfig(keep="seed"))
    many = dedup(tmp_path, records, DedupConfig(keep="seed", workers=2))
    for a, b in ((one, again), (one, many)):
        assert [r.to_json() for r in a[0]] == [r.to_json() for r in b[0]]
        assert [r.to_json() for r in a[1]] == [r.to_json() for r in b[1]] and a[2] == b[2]
    assert one[3].reasons == many[3].reasons and one[3].counts == many[3].counts


def test_several_files_are_one_set_and_bad_lines_are_quarantined_with_their_file(tmp_path, near):
    texts = [near.edit(near.BASE, i % 4) + f" variant {i}" for i in range(20)] + [f"unrelated text {i} here"
                                                                                  for i in range(10)]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(first, [Record(t) for t in texts[:15]])
    write_records(second, [Record(t) for t in texts[15:]])
    with open(second, "a") as f:  # lines 16 to 18: a broken line and a record that repeats one of file a
        f.write("{broken\n" + json.dumps({"instruction": texts[3]}) + "\n")
    result = run([first, second], DedupConfig(), Outputs.beside(tmp_path / "kept.jsonl", "dedup"))
    joined = tmp_path / "joined.jsonl"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    together = run([joined], DedupConfig(), Outputs.beside(tmp_path / "together.jsonl", "dedup"))
    assert (tmp_path / "kept.jsonl").read_text() == (tmp_path / "together.jsonl").read_text()
    assert result.counts == together.counts and result.reasons == together.reasons
    assert [(p.file, p.line) for p in result.problems] == [(str(second), 16), (str(second), 17)]
    assert result.problems[0].reason.startswith("invalid JSON")
    assert result.problems[1].reason == f"exact duplicate of {first}:4 (same instruction, context and response)"
    quarantined = [json.loads(line) for line in (tmp_path / "kept.quarantine.jsonl").read_text().splitlines()]
    assert [(q["file"], q["line"]) for q in quarantined] == [(str(second), 16), (str(second), 17)]


def test_an_empty_file_among_the_sources_is_fine(tmp_path, near):
    empty, full = tmp_path / "empty.jsonl", tmp_path / "full.jsonl"
    empty.write_text("")
    write_records(full, [Record(near.BASE), Record(near.edit(near.BASE, 1))])
    result = run([empty, full, empty], DedupConfig(workers=2), Outputs.beside(tmp_path / "kept.jsonl", "dedup"))
    assert result.counts["in"] == 2 and result.counts["out"] == 1
    # An empty file alone is not a dataset (a failed export, a cut download): refused, unless asked for.
    from workbench.core.runs import EmptyResult

    with pytest.raises(EmptyResult, match="empty.jsonl: an empty file, no record in it"):
        run([empty], DedupConfig(), Outputs.beside(tmp_path / "none.jsonl", "dedup"))
    assert not (tmp_path / "none.jsonl").exists()
    nothing = run([empty], DedupConfig(), Outputs.beside(tmp_path / "none.jsonl", "dedup", allow_empty=True))
    assert nothing.counts == {"in": 0, "out": 0, "removed": 0, "candidates": 0}


def test_a_parquet_file_is_deduplicated_and_its_rows_are_named(tmp_path, near):
    records = [Record(near.BASE), Record("a different question about the fees"), Record(near.edit(near.BASE, 1))]
    write_records(tmp_path / "in.parquet", records + [records[1]])  # the last row repeats the second
    result = run([tmp_path / "in.parquet"], DedupConfig(), Outputs.beside(tmp_path / "kept.jsonl", "dedup"))
    assert [r.id for r in load_records(tmp_path / "kept.jsonl", [])] == [records[0].id, records[1].id]
    [problem] = result.problems
    assert (problem.file, problem.line) == (str(tmp_path / "in.parquet"), 4)
    assert problem.reason == f"duplicate id {records[1].id!r} (first at {tmp_path / 'in.parquet'}:2)"
    assert not list(tmp_path.glob(".dedup-*"))  # the working copy is gone


def test_a_compressed_file_is_one_clear_error_but_gzip_is_read(tmp_path, invoke, near):
    import bz2
    import gzip

    path = tmp_path / "in.jsonl.bz2"
    path.write_bytes(bz2.compress(Record(near.BASE).to_json().encode() + b"\n"))
    result = invoke("dedup", path, "-o", tmp_path / "kept.jsonl")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[0] == f"Error: {path}: a bzip2-compressed file, not JSON lines"
    assert f"bunzip2 -k {path}" in result.output and not (tmp_path / "kept.jsonl").exists()
    zipped = tmp_path / "in.jsonl.gz"
    lines = b"".join(r.to_json().encode() + b"\n" for r in (Record(near.BASE), Record(near.edit(near.BASE, 1)),
                                                            Record("Something else entirely?")))
    zipped.write_bytes(gzip.compress(lines + b"{bad\n"))
    result = invoke("dedup", zipped, "-o", tmp_path / "kept.jsonl.gz")
    assert result.exit_code == 0 and "Kept 2 of 3 records" in result.output, result.output
    assert f"{zipped}:4: -: invalid JSON" in result.output  # lines named by the file given, not a working copy
    assert len(load_records(tmp_path / "kept.jsonl.gz", [])) == 2


def test_questions_about_one_document_are_not_duplicates_by_default_and_a_misspelt_field_is_an_error(
        tmp_path, invoke):
    from workbench.core.catalog import load_catalog

    page = load_catalog()[0].text  # the shared context of from-docs questions about one catalog page
    rows = [Record("When does the programme start?", page, "In October."),
            Record("How much is the semester fee?", page, "1,450 EUR for home students.")]
    path = tmp_path / "docs.jsonl"
    write_records(path, rows)
    result = invoke("dedup", path, "-o", tmp_path / "kept.jsonl")
    assert result.exit_code == 0 and "Kept 2 of 2 records" in result.output, result.output
    assert DedupConfig().fields == ("instruction", "response")
    with_context = invoke("dedup", path, "--fields", "instruction,context", "-o", tmp_path / "c.jsonl")
    assert "Kept 1 of 2 records" in with_context.output
    typo = invoke("dedup", path, "--fields", "instrucion", "-o", tmp_path / "t.jsonl")
    assert typo.exit_code == 1 and "unknown field 'instrucion': choose from instruction, context, response" in \
        typo.output and "Traceback" not in typo.output
    assert not (tmp_path / "t.jsonl").exists()


def test_the_clusters_file_may_not_be_the_output(tmp_path, invoke, records_file):
    source = records_file([Record("One question?"), Record("Another question?")])
    result = invoke("dedup", source, "-o", tmp_path / "x.jsonl", "--clusters", tmp_path / "x.jsonl")
    assert result.exit_code == 1 and "named as two outputs (the records and the clusters)" in result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_a_folder_is_one_line_and_parquet_output_is_parquet(tmp_path, invoke, records_file):
    (tmp_path / "adir").mkdir()
    folder = invoke("dedup", tmp_path / "adir", "-o", tmp_path / "f.jsonl")
    said = f"Error: {tmp_path / 'adir'}: cannot read: Is a directory"
    assert folder.exit_code == 1 and folder.output.startswith(said)
    source = records_file([Record("One question?"), Record("Another question?")])
    result = invoke("dedup", source, "-o", tmp_path / "kept.parquet")
    assert result.exit_code == 0, result.output
    kept = load_records(tmp_path / "kept.parquet", [])
    assert [r.id for r in kept] == [r.id for r in load_records(source, [])]
    assert (tmp_path / "kept.parquet").read_bytes()[:4] == b"PAR1"

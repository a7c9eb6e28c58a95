"""Candidate responses (issue 19, part 1): K per instruction from one or more generators, grouped, each with its
generator in lineage; repeats and empty answers dropped with why; resumable."""

import json

import pytest

from pipelines import responses
from workbench.core.backends import BackendConfig, load_backend
from workbench.core.errors import InputError
from workbench.core.io import load_records
from workbench.core.records import Record
from workbench.core.runs import Outputs


@pytest.fixture()
def instructions(tmp_path, seeds):
    path = tmp_path / "in.jsonl"
    records = [r for r in seeds if r.response][:4] + [Record(instruction="Name three reasons to study abroad.")]
    path.write_text("".join(r.to_json() + "\n" for r in records))
    return path, records


def generator(model, adapter=None):
    return load_backend(BackendConfig(model=str(model), adapter=adapter))


def test_groups_of_candidates_carry_their_generator_and_parent(tiny_falcon, tiny_llama, instructions, tmp_path):
    path, given = instructions
    config = responses.ResponsesConfig(n=3, sampling=responses.ResponsesConfig().sampling.override(max_new_tokens=8))
    result = responses.run([generator(tiny_falcon), generator(tiny_llama)], path, config,
                           Outputs.beside(tmp_path / "out.jsonl", "responses"))
    kept = load_records(tmp_path / "out.jsonl", [])
    groups = {}
    for record in kept:
        groups.setdefault(record.meta["compare_group"], []).append(record)
    assert set(groups) == {r.id for r in given}
    for parent in given:
        group = sorted(groups[parent.id], key=lambda r: r.meta["candidate"])
        assert [r.meta["candidate"] for r in group] == [0, 1, 2]
        assert all(r.instruction == parent.instruction and r.context == parent.context for r in group)
        event = group[1].lineage[-1]
        assert event["stage"] == "responses" and event["detail"]["parent"] == parent.id
        assert event["detail"]["params"]["temperature"] == 0.7 and event["detail"]["of"] == 3
        if parent.response:  # the person's answer is candidate 0, the two models write the others in turn
            assert group[0].response == parent.response and group[0].meta["generator"] == "original"
            assert group[0].id == parent.id and group[0].source == parent.source
            assert [r.meta["generator"] for r in group[1:]] == [str(tiny_falcon), str(tiny_llama)]
            assert all(r.source == "generated" for r in group[1:])
        else:  # no answer of its own: the first generator fills slot 0 too, with another seed
            assert [r.meta["generator"] for r in group] == [str(tiny_falcon), str(tiny_falcon), str(tiny_llama)]
            assert group[0].response != group[1].response
    assert result.counts["kept"] == 15 and result.counts["rejected"] == 0
    assert json.loads((tmp_path / "out.manifest.json").read_text())["details"]["generators"] == [
        str(tiny_falcon), str(tiny_llama)]


def test_repeated_answers_are_dropped_with_why_and_a_group_of_one_goes(tiny_falcon, instructions, tmp_path):
    """Greedy decoding writes the same answer in every slot: the repeats are dropped, naming the candidate they
    repeat; an instruction with no answer of its own is then left with one candidate, nothing to compare."""
    path, given = instructions
    greedy = responses.ResponsesConfig(n=3, sampling=responses.ResponsesConfig().sampling.override(
        temperature=0.0, max_new_tokens=8))
    result = responses.run([generator(tiny_falcon)], path, greedy, Outputs.beside(tmp_path / "out.jsonl", "responses"))
    kept = load_records(tmp_path / "out.jsonl", [])
    assert len(kept) == 8 and {r.meta["candidate"] for r in kept} == {0, 1}  # 4 originals + 4 greedy answers
    dropped = [json.loads(line) for line in (tmp_path / "out.rejected.jsonl").read_text().splitlines()]
    reasons = [d["lineage"][-1]["reason"] for d in dropped]
    assert reasons.count("same response as an earlier candidate") == 4 + 2  # slot 2 of each; slots 1-2 of the last
    assert reasons.count("fewer than 2 different responses") == 1
    repeat = next(d for d in dropped if d["lineage"][-1]["reason"].startswith("same"))
    assert repeat["lineage"][-1]["detail"]["same_as"] == 1 and repeat["lineage"][-1]["detail"]["candidate"] == 2
    lonely = next(d for d in dropped if d["lineage"][-1]["reason"].startswith("fewer"))
    assert lonely["id"] == given[-1].id
    assert result.counts["kept"] == 8


def test_a_run_stopped_midway_continues_to_the_same_output(tiny_falcon, instructions, tmp_path):
    path, _ = instructions
    config = responses.ResponsesConfig(n=2, sampling=responses.ResponsesConfig().sampling.override(
        max_new_tokens=8, batch_size=2))
    responses.run([generator(tiny_falcon)], path, config, Outputs.beside(tmp_path / "straight.jsonl", "responses"))

    def stop_after_first_batch(done, total):
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "stopped.jsonl"
    with pytest.raises(KeyboardInterrupt):
        responses.run([generator(tiny_falcon)], path, config, Outputs.beside(out, "responses"),
                      progress=stop_after_first_batch)
    assert 0 < len(out.read_text().splitlines()) < len((tmp_path / "straight.jsonl").read_text().splitlines())
    again = responses.run([generator(tiny_falcon)], path, config, Outputs.beside(out, "responses"))
    assert again.details["resumed"]
    assert out.read_bytes() == (tmp_path / "straight.jsonl").read_bytes()
    # Finished, then cut (a disk that filled, an editor) or changed: the same command refuses to build on it.
    whole = out.read_bytes()
    for damaged in (whole[: len(whole) // 2], whole.replace(b'"', b"'", 1)):
        out.write_bytes(damaged)
        with pytest.raises(InputError, match="changed since this command wrote it"):
            responses.run([generator(tiny_falcon)], path, config, Outputs.beside(out, "responses"))
        assert out.read_bytes() == damaged  # left as it is for the person to look at
    out.write_bytes(whole)
    assert responses.run([generator(tiny_falcon)], path, config, Outputs.beside(out, "responses")).details["resumed"]
    assert out.read_bytes() == whole


def test_cli_generates_candidates_and_refuses_what_it_cannot_do(tiny_falcon, tiny_llama, instructions, tmp_path,
                                                                invoke):
    path, _ = instructions
    made = invoke("generate", "responses", path, "-o", tmp_path / "c.jsonl", "--model", tiny_falcon, "--model",
                  tiny_llama, "--n", "3", "--max-new-tokens", "6")
    assert made.exit_code == 0, made.output
    assert "Kept 15 records" in made.output and len((tmp_path / "c.jsonl").read_text().splitlines()) == 15
    too_many = invoke("generate", "responses", path, "-o", tmp_path / "d.jsonl", "--model", tiny_falcon,
                      "--adapter", "a", "--adapter", "b")
    assert too_many.exit_code == 2 and "2 --adapter for 1 --model" in too_many.output
    one = invoke("generate", "responses", path, "-o", tmp_path / "e.jsonl", "--model", tiny_falcon, "--n", "1")
    assert one.exit_code != 0 and "n" in one.output and "Traceback" not in one.output
    parquet = invoke("generate", "responses", path, "-o", tmp_path / "c.parquet", "--model", tiny_falcon)
    assert parquet.exit_code == 1 and "writes JSON lines" in parquet.output


def test_an_instruction_too_long_for_the_model_drops_its_record_alone(tiny_falcon, instructions, tmp_path):
    """A prompt longer than the model's context (2,048 positions) is dropped through the ledger with its length; a
    900 KB one asks for no memory; the good records of the file are kept."""
    path, given = instructions
    long_ones = [Record("Summarise: " + "word " * 3000), Record("Summarise: " + "x" * 900_000)]
    path.write_text(path.read_text() + "".join(r.to_json() + "\n" for r in long_ones))
    config = responses.ResponsesConfig(n=2, sampling=responses.ResponsesConfig().sampling.override(max_new_tokens=8))
    result = responses.run([generator(tiny_falcon)], path, config, Outputs.beside(tmp_path / "out.jsonl", "responses"))
    kept = load_records(tmp_path / "out.jsonl", [])
    assert {r.meta["compare_group"] for r in kept} == {r.id for r in given}
    dropped = load_records(tmp_path / "out.rejected.jsonl", [])
    refused = [r for r in dropped if r.lineage[-1]["reason"] == "prompt not answered"]
    assert {r.instruction for r in refused} == {r.instruction for r in long_ones}
    assert all("more than the model's context of 2,048" in r.lineage[-1]["detail"]["error"] for r in refused)
    assert result.reasons["drop: prompt not answered"] == 4  # two candidates of each


def test_control_characters_are_taken_out_of_generated_text():
    from workbench.core.models import without_controls

    assert without_controls("a\x00b\x1bc\x7f\td\ne\x9f") == ("abc\td\ne", 4)
    assert without_controls("plain text, é and 日本") == ("plain text, é and 日本", 0)

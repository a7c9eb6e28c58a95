import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pipelines.bootstrap import PAPER_SAMPLING, BootstrapConfig, _build_prompts, parse_category, parse_instructions, run
from workbench.core.catalog import SEED_TASKS
from workbench.core.errors import InputError
from workbench.core.io import load_records
from workbench.core.models import get_model
from workbench.core.prompts import bootstrap_prompt
from workbench.core.runs import Outputs

SMALL = PAPER_SAMPLING.model_copy(update={"max_new_tokens": 160})


def test_prompt_numbers_the_tasks_and_ends_with_the_next_number():
    prompt = bootstrap_prompt(["Name a river:", "List three   modules of the BIS course."])
    assert prompt == ("Come up with a series of tasks:\n1. Name a river\n"
                      "2. List three modules of the BIS course.\n3.")
    assert bootstrap_prompt(["x"], classification=True).startswith("Come up with a series of classification tasks.")


@pytest.mark.parametrize("completion, reason, rule, items, lost", [
    (" What is ECTS?\n10. List two modules.\n11 . Odd  spacing   here\n12.", "stop", "drop-all",
     ["What is ECTS?", "List two modules.", "Odd spacing here 12."], []),  # no space after "12.": no split
    (" First task here\n10. Second task cut off mid", "length", "drop-all",
     [], ["First task here", "Second task cut off mid"]),
    (" First task here\n10. Second task cut off mid", "length", "drop-last",
     ["First task here"], ["Second task cut off mid"]),
    ("\n\n10. \n11. Only this one", "stop", "drop-all", ["Only this one"], []),
    ("", "length", "drop-all", [], []),
])
def test_parse_instructions(completion, reason, rule, items, lost):
    assert parse_instructions(completion, reason, rule) == (items, lost)


@pytest.mark.parametrize("answer, category", [
    (" closed_qa", "closed_qa"), ("Brainstorming.", "brainstorming"), (" creative writing\n", "creative_writing"),
    (" information-extraction or summarization", "information_extraction"), (" poetry", None),
])
def test_parse_category(answer, category):
    assert parse_category(answer) == category


def test_quota_steers_the_seeds_shown(seeds):
    rng = random.Random(0)
    config = BootstrapConfig(quota={"classification": 1.0}, prompts_per_round=3)
    for prompt, shown in _build_prompts(rng, seeds, ["A machine task to show"], config):
        assert prompt.startswith("Come up with a series of classification tasks.")
        assert sum(s.category == "classification" for s in shown) == 6
        assert "A machine task to show" in prompt


def generate(model, config, output, force=False):
    """The instructions stage from the bundled seeds into OUTPUT (rejected ones beside it), as the CLI runs it."""
    return run(model, SEED_TASKS, config, Outputs.beside(output, "instructions"), force)


def test_generates_instructions_with_lineage_and_rejections(tiny_generator, seeds, tmp_path):
    model = get_model(str(tiny_generator))
    result = generate(model, BootstrapConfig(num=30, rounds=2, sampling=SMALL), tmp_path / "out.jsonl")
    kept, rejected = load_records(tmp_path / "out.jsonl", []), load_records(tmp_path / "out.rejected.jsonl", [])
    assert result.details["rounds"] == 2 and result.counts["kept"] == len(kept)
    # Every rejection is a line and a ledger event; the same text rejected twice is one record read back.
    lines = (tmp_path / "out.rejected.jsonl").read_text().splitlines()
    assert result.counts["rejected"] == len(lines) == sum(result.reasons.values()) >= len(rejected)
    assert kept, "the trained tiny generator should get some instructions through"
    assert result.counts["completion_tokens"] > 0 and result.counts["prompt_tokens"] > 0
    record = kept[0]
    assert record.source == "generated" and record.category in {s.category for s in seeds}
    created = record.lineage[0]
    assert created["detail"]["backend"] == "transformers" and created["detail"]["model"] == str(tiny_generator)
    assert created["detail"]["template"] == "self-instruct/bootstrap/v1"
    assert created["detail"]["params"]["temperature"] == 0.7 and created["detail"]["round"] in (0, 1)
    assert created["detail"]["category_method"] in ("model", "majority-of-shown-seeds")
    assert record.lineage[-1]["action"] == "keep"
    assert all(r.lineage[-1]["action"] == "drop" and r.lineage[-1]["reason"] for r in rejected)
    events = [json.loads(line) for line in (tmp_path / "out.ledger.jsonl").read_text().splitlines()]
    assert [e["record_id"] for e in events] == [json.loads(line)["id"] for line in lines]
    seeds_text = {s.instruction for s in seeds}
    assert not seeds_text & {r.instruction for r in kept}  # a copied seed has ROUGE-L 1.0 against the pool


def test_refuses_to_overwrite_and_to_mix_settings(tiny_generator, tmp_path):
    model = get_model(str(tiny_generator))
    (tmp_path / "out.jsonl").write_text("mine\n")
    with pytest.raises(InputError, match="exists and was not written by this command"):
        generate(model, BootstrapConfig(num=2, rounds=1, sampling=SMALL), tmp_path / "out.jsonl")
    generate(model, BootstrapConfig(num=2, rounds=1, sampling=SMALL), tmp_path / "out.jsonl", force=True)
    with pytest.raises(InputError, match="started with other settings"):
        generate(model, BootstrapConfig(num=2, rounds=1, sampling=SMALL, seed=9), tmp_path / "out.jsonl")


def test_a_finished_run_continues_with_more_rounds(tiny_generator, tmp_path):
    model = get_model(str(tiny_generator))
    one = generate(model, BootstrapConfig(num=100, rounds=1, sampling=SMALL), tmp_path / "o.jsonl")
    two = generate(model, BootstrapConfig(num=100, rounds=2, sampling=SMALL), tmp_path / "o.jsonl")
    assert (one.details["rounds"], two.details["rounds"]) == (1, 2) and two.details["resumed"]
    straight = generate(model, BootstrapConfig(num=100, rounds=2, sampling=SMALL), tmp_path / "s.jsonl")
    for suffix in (".jsonl", ".rejected.jsonl", ".ledger.jsonl"):
        assert (tmp_path / f"o{suffix}").read_bytes() == (tmp_path / f"s{suffix}").read_bytes()
    assert straight.counts["kept"] == two.counts["kept"] and straight.reasons == two.reasons


@pytest.mark.slow
def test_kill_minus_9_and_rerun_loses_and_duplicates_nothing(tiny_generator, tmp_path):
    command = [sys.executable, "-m", "workbench.cli", "generate", "instructions", "--model", str(tiny_generator),
               "--num", "500", "--rounds", "5", "--max-new-tokens", "160"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*command, "-o", str(tmp_path / "straight.jsonl")], check=True, capture_output=True, env=env)

    killed = tmp_path / "killed.jsonl"
    state = tmp_path / "killed.state.json"
    process = subprocess.Popen([*command, "-o", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text()).get("round", 0) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads(state.read_text())["round"] < 5, "the run finished before it could be killed"
    with open(killed, "a") as f:
        f.write('{"instruction": "half a line written as the kill came')  # what a kill mid-write leaves
    subprocess.run([*command, "-o", str(killed)], check=True, capture_output=True, env=env)
    assert killed.read_bytes() == (tmp_path / "straight.jsonl").read_bytes()
    for suffix in (".rejected.jsonl", ".ledger.jsonl"):
        assert (tmp_path / f"killed{suffix}").read_bytes() == (tmp_path / f"straight{suffix}").read_bytes()
    ids = [r.id for r in load_records(killed, [])]
    assert len(ids) == len(set(ids))

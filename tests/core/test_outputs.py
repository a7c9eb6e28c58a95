"""Exclusive, verified outputs: one writer at a time (a second refused, naming the first; a dead one's lock taken
over), a stage output changed after its stage finished is redone, and what -o names is never replaced when it is
not a regular file."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.core.test_runs import Cfg, keep_long, make_input
from workbench.core import locks
from workbench.core.io import load_records
from workbench.core.runs import Stage, run_stage

RECIPES = Path(__file__).parents[2] / "recipes"
HOLD = """
import sys, time
from workbench.core import locks
locks.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def hold_lock(target):
    """Another process that holds TARGET's lock (as a command writing it would) until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_writers_lock_is_taken_over(tmp_path, invoke):
    source, output = make_input(tmp_path), tmp_path / "out.jsonl"
    holder = hold_lock(output)
    try:
        result = invoke("dedup", source, "-o", output)
        assert result.exit_code == 1
        assert f"being written by another run (PID {holder.pid}" in result.output
        assert not output.exists()  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)  # as a crash: the lock file stays, its flock goes with the process
        holder.wait()
    assert locks.lock_file(output).exists()
    result = invoke("dedup", source, "-o", output)
    assert result.exit_code == 0, result.output
    assert len(load_records(output, [])) == 3
    assert not locks.lock_file(output).exists()  # released when the command ended


def test_a_run_folder_is_locked_while_it_runs(tmp_path):
    from workbench.recipe import load_recipe, run_recipe

    holder = hold_lock(tmp_path / "runs" / "demo")
    try:
        with pytest.raises(locks.OutputBusy, match=f"PID {holder.pid}"):
            run_recipe(load_recipe(RECIPES / "course-advisor-tiny.yaml"), tmp_path / "runs", "demo")
    finally:
        holder.kill()
        holder.wait()


def test_a_stage_output_changed_after_the_stage_finished_is_redone_and_says_why(tmp_path):
    source, calls = make_input(tmp_path), []
    stage = Stage(tmp_path / "runs" / "r", "filter", Cfg(), [source])

    def run():
        return run_stage(stage, lambda out: keep_long(source, Cfg(), out, calls))

    first = run()
    manifest = json.loads(stage.path("manifest.json").read_text())
    assert manifest["outputs"]["records.jsonl"]["size"] == stage.path("records.jsonl").stat().st_size
    assert run().skipped
    records = stage.path("records.jsonl")
    whole = records.read_bytes()
    records.write_bytes(whole[: len(whole) // 2])  # a truncated copy, a disk that filled up, an editor
    again = run()
    assert not again.skipped and len(calls) == 2
    assert again.redone_because == [f"records.jsonl: {len(whole) // 2:,} bytes, was {len(whole):,}"]
    assert "done again" in again.summary_lines()[0] and "records.jsonl" in again.summary_lines()[0]
    assert records.read_bytes() == whole and first.manifest["counts"] == again.manifest["counts"]
    assert run().skipped
    edited = whole.replace(b"four", b"FOUR")  # same size, other bytes
    records.write_bytes(edited)
    assert run().redone_because == ["records.jsonl: changed (same size)"]
    stage.path("dropped.jsonl").unlink()
    assert run().redone_because == ["dropped.jsonl: missing"]


def test_outputs_that_are_not_regular_files_are_refused_and_a_symlink_is_written_through(tmp_path, invoke):
    source = make_input(tmp_path)
    for target, kind in (("/dev/null", "a character device"), ("/dev/full", "a character device")):
        result = invoke("dedup", source, "-o", target)
        assert result.exit_code == 1 and f"{target}: is {kind}" in result.output
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    result = invoke("dedup", source, "-o", fifo)
    assert result.exit_code == 1 and "is a FIFO" in result.output
    folder = tmp_path / "folder"
    folder.mkdir()
    result = invoke("dedup", source, "-o", folder)
    assert result.exit_code == 1 and "is a folder, and this output is a file" in result.output
    assert list(folder.iterdir()) == []
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_text("")
    link.symlink_to(real)
    result = invoke("dedup", source, "-o", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and len(load_records(real, [])) == 3


@pytest.mark.slow
def test_two_generate_responses_into_one_file_at_once_the_second_is_refused(tmp_path, tiny_generator):
    """Two real commands, as two terminals would start them: the first writes every record once."""
    source, output = make_input(tmp_path), tmp_path / "responses.jsonl"
    command = [sys.executable, "-m", "workbench", "generate", "responses", str(source), "-o", str(output),
               "--model", str(tiny_generator), "--n", "2", "--max-new-tokens", "8"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not locks.lock_file(output).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1
    assert f"being written by another run (PID {first.pid}" in second.stderr
    records = load_records(output, [])
    kept = int(re.search(r"Kept (\d+)", out + err).group(1))
    assert len(records) == len({r.id for r in records}) == kept > 0  # each once: none written by the second


def test_a_second_finetune_into_the_same_adapter_is_refused_before_its_model_loads(tmp_path, invoke):
    source, adapter = make_input(tmp_path), tmp_path / "adapter"
    holder = hold_lock(adapter)  # the first finetune, training
    try:
        result = invoke("finetune", "--base", tmp_path / "no-such-model", "--data", source, "-o", adapter)
        assert result.exit_code == 1 and f"being written by another run (PID {holder.pid}" in result.output
        assert "no-such-model" not in result.output and not adapter.exists()
    finally:
        holder.kill()
        holder.wait()


def test_an_empty_file_is_not_a_valid_dataset_and_dev_stdout_on_a_pipe_is_refused(tmp_path, invoke):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = invoke("data", "validate", empty)
    assert result.exit_code == 1 and f"{empty}: an empty file, no record in it" in result.output
    source = make_input(tmp_path)
    piped = subprocess.run([sys.executable, "-m", "workbench", "data", "export", str(source), "--format", "alpaca",
                            "-o", "/dev/stdout"], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 1 and "/dev/stdout: is a FIFO" in piped.stderr and "Traceback" not in piped.stderr

"""`workbench finetune --processes 2` on the CPU (accelerate launch, torchrun, gloo): the adapter and the loss curve of
one process given the same effective batch, DPO too; a killed process ends the run with one line, the last complete
checkpoint intact, and a resume under 2 processes continues it."""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from pipelines.finetune.launch import failure_line, launch_command

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def finetune(*args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "workbench", "finetune", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def assert_same_adapter(a_dir, b_dir, atol: float = 1e-5):
    a, b = load_file(a_dir / "adapter_model.safetensors"), load_file(b_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    moved = max(float(t.abs().max()) for t in a.values())
    assert moved > 10 * atol  # the adapters moved: equal weights are not two untouched initialisations
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol), (key, float((a[key] - b[key]).abs().max()))


def manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture()
def sixteen(seeds, tmp_path):
    # 16 examples, unpacked: an epoch is 8 steps of 2 rows in one process or of 1 row in each of two. (When the
    # rows do not divide, accelerate repeats the first ones to even out the last step: the runs then differ there.)
    data = tmp_path / "curated.jsonl"
    data.write_text("".join(r.to_json() + "\n" for r in [r for r in seeds if r.response][:16]))
    return data


def options(base, data, steps: int):
    return ["--base", base, "--data", data, "--max-steps", steps, "--save-steps", 4, "--max-length", 256,
            "--eval-split", 0, "--lr", 1e-3, "--no-grad-checkpointing", "--quant", "none", "--dropout", 0,
            "--no-packing", "--seed", 3]


@pytest.mark.slow
def test_a_killed_process_stops_the_run_in_one_line_and_two_processes_resume_to_one_process_s_adapter(
        tiny_generator, sixteen, tmp_path):
    common = options(tiny_generator, sixteen, 40)
    whole = tmp_path / "one-process"
    finetune(*common, "--batch-size", 2, "-o", whole)

    two = tmp_path / "two-processes"
    command = [sys.executable, "-m", "workbench", "finetune", *map(str, common), "--batch-size", "1",
               "--processes", "2", "-o", str(two)]
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (two / "checkpoints" / "checkpoint-8" / "trainer_state.json").exists():
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    ranks = {p.environ().get("RANK"): p for p in psutil.Process(run.pid).children(recursive=True)
             if "RANK" in p.environ()}
    ranks["1"].kill()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("Finetuning")]  # progress bar
    assert lines[0] == "Error: process 2 of 2 (rank 1) was killed by SIGKILL; the run stopped", stderr[-2000:]
    assert lines[1].startswith("Hint: the last complete checkpoint, checkpoint-") and "--resume" in lines[1]
    assert len(lines) == 2 and "Traceback" not in stderr  # the launcher's pages are in the log, not on screen
    assert "Traceback" in (tmp_path / "two-processes.launch.log").read_text()
    assert not (two / "manifest.json").exists() and not (two / "adapter_model.safetensors").exists()
    assert (two / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors").exists()

    # Another count of processes would be another run (another effective batch): refused; the same count resumes.
    refused = finetune(*common, "--batch-size", 1, "--resume", "-o", two, check=False)
    assert refused.returncode == 1 and "--resume: processes differ" in refused.stderr
    resumed = finetune(*common, "--batch-size", 1, "--processes", 2, "--resume", "-o", two)
    assert resumed.stdout.count("Adapter in") == 1  # the summary, once
    done = manifest(two)
    assert done["resumed"] and done["steps"] == 40 and done["processes"] == 2
    assert done["effective_batch_rows"] == manifest(whole)["effective_batch_rows"] == 2
    assert_same_adapter(whole, two)
    curve = {p["step"]: p["loss"] for p in manifest(whole)["train_loss"]}
    resumed_curve = {p["step"]: p["loss"] for p in done["train_loss"]}
    assert resumed_curve.keys() == curve.keys()
    # A logged loss is the mean since the last log; the first after the resume starts at the checkpoint. Up to the
    # kill (restored from the checkpoint) and at the end the two runs log the same means.
    for step in [s for s in curve if s <= 8] + [40]:
        assert resumed_curve[step] == pytest.approx(curve[step], rel=1e-5), step
    ledger = tmp_path / "two-processes.manifest.json"
    assert json.loads(ledger.read_text())["counts"]["steps"] == 40  # the stage's files: written once, by the main


@pytest.mark.slow
def test_dpo_under_accelerate_launch_in_two_processes_trains_the_adapter_of_one(tiny_falcon, tmp_path):
    from test_dpo import preference_pairs, write_pairs

    data = write_pairs(tmp_path / "pairs.jsonl", preference_pairs(16))
    common = ["--method", "dpo", "--base", tiny_falcon, "--data", data, "--max-steps", 3, "--max-length", 256,
              "--eval-split", 0, "--lr", 5e-3, "--quant", "none", "--dropout", 0]
    finetune(*common, "--batch-size", 4, "-o", tmp_path / "one")
    # Typed as accelerate's own docs say (not --processes): every process runs the command itself.
    launched = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                               "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m",
                               "workbench", "finetune", *map(str, common), "--batch-size", "2", "-o",
                               str(tmp_path / "two")], env=ENV, capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("DPO adapter in") == 1  # the main process's summary only
    assert_same_adapter(tmp_path / "one", tmp_path / "two")
    one, two = manifest(tmp_path / "one"), manifest(tmp_path / "two")
    assert two["processes"] == 2 and two["effective_batch_rows"] == one["effective_batch_rows"] == 4
    for a, b in zip(one["dpo_steps"], two["dpo_steps"], strict=True):
        assert a["step"] == b["step"] and b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["rewards/margins"] == pytest.approx(a["rewards/margins"], abs=1e-5)


def test_bad_data_or_a_missing_config_is_one_line_before_any_process_starts(tiny_falcon, tmp_path, invoke):
    data = tmp_path / "curated.jsonl"
    data.write_text(json.dumps({"instruction": "Q?", "response": "A."}) + "\n")
    missing = invoke("finetune", "--base", tiny_falcon, "--data", tmp_path / "none.jsonl", "-o", tmp_path / "a",
                     "--processes", 2)
    assert missing.exit_code == 1 and "none.jsonl: no such file" in missing.output
    pairs = invoke("finetune", "--method", "dpo", "--base", tiny_falcon, "--data", data, "-o", tmp_path / "b",
                   "--processes", 2)
    assert pairs.exit_code == 1 and "no preference pair" in pairs.output
    no_config = invoke("finetune", "--base", tiny_falcon, "--data", data, "-o", tmp_path / "c",
                       "--accelerate-config", tmp_path / "accelerate.yaml")
    assert no_config.exit_code == 1 and "accelerate.yaml: no such file" in no_config.output
    assert not (tmp_path / "c.launch.log").exists()  # nothing was launched
    command = launch_command(tmp_path / "launch.json", 2)
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert command[-3:] == ["-m", "pipelines.finetune.worker", str(tmp_path / "launch.json")]
    configured = launch_command(tmp_path / "launch.json", 1, tmp_path / "fsdp.yaml")
    assert "--num_processes" not in configured and "--multi_gpu" not in configured  # the config file's count


def test_a_failed_launch_is_said_in_one_line():
    # torchrun's summary when a worker dies, as it prints it (trimmed).
    killed = """[rank0]: Traceback (most recent call last):
[rank0]: RuntimeError: Connection closed by peer [127.0.0.1]:29500
E1202 11:02:03.123000 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: -9)
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_11:02:03
  host      : machine
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242"""
    assert failure_line(killed, 2) == "process 2 of 2 (rank 1) was killed by SIGKILL; the run stopped"
    assert failure_line(killed.replace("-9 (pid", "3 (pid"), 4) == "process 2 of 4 (rank 1) exited with code 3; " \
                                                                   "the run stopped"
    said = "Error: data.jsonl: no record to train on\nHint: ...\n" + killed
    assert failure_line(said, 2) == "data.jsonl: no record to train on"
    assert failure_line("usage: accelerate launch\naccelerate: error: bad flag\n", 2) == \
        "the launcher failed: accelerate: error: bad flag"


@pytest.mark.slow
def test_ctrl_c_stops_the_launcher_and_every_worker_and_nothing_is_written_after(tiny_generator, sixteen, tmp_path):
    import signal

    two = tmp_path / "two-processes"
    command = [sys.executable, "-m", "workbench", "finetune", *map(str, options(tiny_generator, sixteen, 400)),
               "--batch-size", "1", "--processes", "2", "-o", str(two)]
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (two / "checkpoints" / "checkpoint-4" / "trainer_state.json").exists():
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)
    tree = psutil.Process(run.pid).children(recursive=True)
    assert sum("RANK" in p.environ() for p in tree) == 2  # the launcher's two workers, each in its own session
    run.send_signal(signal.SIGINT)  # what Ctrl-C sends to the command
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-2000:]
    assert "Interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    written = {p: p.stat().st_mtime_ns for p in two.rglob("*") if p.is_file()}
    time.sleep(3)
    assert {p: p.stat().st_mtime_ns for p in two.rglob("*") if p.is_file()} == written  # nothing after
    assert not (two / "manifest.json").exists() and not (two / "adapter_model.safetensors").exists()
    assert not (tmp_path / "two-processes.manifest.json").exists()

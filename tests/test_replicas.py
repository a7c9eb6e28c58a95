"""Several `--api-base`: generation and evaluation spread over real `workbench serve` replicas of a tiny model; a
replica dead from the start and one killed midway are taken out of rotation and their requests answered by the
others; every record once, the output that of one server (greedy decoding), resumable after kill -9."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "workbench", "serve", "--model", str(model), "--name", "tiny",
                                "--port", str(port), "--max-waiting", "16"], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return process, f"http://127.0.0.1:{port}/v1"


def wait_until_up(process, base: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.fixture(scope="module")
def servers(tiny_generator):
    """Two replicas for the module: the evaluation uses them first, the generation test kills them."""
    started = [start_server(tiny_generator) for _ in range(2)]
    for process, base in started:
        wait_until_up(process, base)
    yield started
    for process, _ in started:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def generate(instructions, output, bases, **popen):
    command = [sys.executable, "-m", "workbench", "generate", "responses", str(instructions), "--model", "tiny",
               "--backend", "openai", "--temperature", "0", "--max-new-tokens", "32", "--n", "2", "--concurrency",
               "2", "-o", str(output), *[a for base in bases for a in ("--api-base", base)]]
    if popen:
        return subprocess.Popen(command, env=ENV, **popen)
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_eval_over_two_replicas_scores_as_one(servers, tmp_path):
    (_, base_a), (_, base_b) = servers

    def evaluate(name, bases):
        done = subprocess.run([sys.executable, "-m", "workbench", "eval", "run", "--suite", "course_advisor",
                               "--model", "tiny", "--backend", "openai", "--limit", "8", "--max-new-tokens", "24",
                               "-o", str(tmp_path / name), *[a for base in bases for a in ("--api-base", base)]],
                              env=ENV, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        answers = tmp_path / name / "course_advisor" / "predictions.jsonl"
        return [(row["id"], row["prediction"]) for row in map(json.loads, answers.read_text().splitlines())]

    assert evaluate("two", [base_a, base_b]) == evaluate("one", [base_a])


def test_generation_over_replicas_one_killed_midway_equals_one_server_and_resumes_after_kill_9(
        servers, seeds, tmp_path):
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text("".join(r.to_json() + "\n" for r in seeds[:30]))
    (a, base_a), (b, base_b) = servers
    one = generate(instructions, tmp_path / "one.jsonl", [base_a])
    assert one.returncode == 0, one.stderr[-2000:]
    reference = (tmp_path / "one.jsonl").read_text()
    assert lines(tmp_path / "one.jsonl") == 60  # each instruction's own response and one generated

    # Kill -9 the client midway: the rerun resumes, and the two replicas give what one server gave.
    killed = tmp_path / "resumed.jsonl"
    client = generate(instructions, killed, [base_a, base_b], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      start_new_session=True)
    while lines(killed) < 20:
        assert client.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    assert lines(killed) < 60
    resumed = generate(instructions, killed, [base_a, base_b])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert killed.read_text() == reference

    # A replica that never answers (nothing listens there) and one killed midway: both leave the rotation, their
    # requests are answered by the one left, each record once.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    spread = tmp_path / "spread.jsonl"
    run = generate(instructions, spread, [base_a, base_b, dead], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True)
    while lines(spread) < 20:
        assert run.poll() is None, "the run ended before a server could be killed"
        time.sleep(0.02)
    b.kill()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-2000:]
    assert spread.read_text() == reference
    warnings = [line for line in stderr.splitlines() if line.startswith("Warning:")]
    assert any(line.startswith(f"Warning: {dead} is out of rotation (APIConnectionError") for line in warnings)
    assert any(line.startswith(f"Warning: {base_b} is out of rotation") for line in warnings), stderr[-2000:]
    assert "Traceback" not in stderr and "Kept 60 records" in stdout
    ids = [json.loads(line)["id"] for line in spread.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 60

    # Every replica gone: one line, and what was generated is kept for the rerun.
    a.kill()
    down = generate(instructions, tmp_path / "none.jsonl", [base_a, base_b])
    assert down.returncode == 1 and "Error: every server is out of rotation" in down.stderr
    assert "Traceback" not in down.stderr


def test_busy_replicas_429_is_waited_out_and_one_prompt_refused_drops_only_its_record(tiny_generator, seeds,
                                                                                      tmp_path):
    """Two real replicas that admit one request at a time, under the client's default concurrency (4 each): their
    429s are waited out (Retry-After), neither leaves the rotation; one instruction too long for the model's
    context is refused (HTTP 400) and only its record is dropped, with why."""
    started = []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "workbench", "serve", "--model", str(tiny_generator),
                                    "--name", "tiny", "--port", str(port), "--max-waiting", "1"], env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append((process, f"http://127.0.0.1:{port}/v1"))
    try:
        for process, base in started:
            wait_until_up(process, base)
        long = seeds[0].__class__("Summarise this: " + "word " * 3000)  # > the tiny model's 2,048 positions
        instructions = tmp_path / "instructions.jsonl"
        instructions.write_text("".join(r.to_json() + "\n" for r in [*seeds[:12], long]))
        output = tmp_path / "busy.jsonl"
        done = subprocess.run([sys.executable, "-m", "workbench", "generate", "responses", str(instructions),
                               "--model", "tiny", "--backend", "openai", "--temperature", "0", "--max-new-tokens", "8",
                               "--n", "2", "-o", str(output),
                               *[a for _, base in started for a in ("--api-base", base)]],
                              env=ENV, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "out of rotation" not in done.stderr and "Traceback" not in done.stderr
        kept = [json.loads(line) for line in output.read_text().splitlines()]
        assert {r["instruction"] for r in kept} == {r.instruction for r in seeds[:12]}
        dropped = [json.loads(line) for line in (tmp_path / "busy.rejected.jsonl").read_text().splitlines()]
        refused = [r for r in dropped if r["lineage"][-1]["reason"] == "prompt not answered"]
        assert refused and {r["instruction"] for r in refused} == {long.instruction}
        assert "HTTP 400" in refused[0]["lineage"][-1]["detail"]["error"]
        assert "context of 2,048" in refused[0]["lineage"][-1]["detail"]["error"]
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=30)

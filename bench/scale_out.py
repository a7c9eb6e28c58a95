"""Scaling out, measured against one of each in the same run: finetuning in 1 vs 2 processes (the same effective
batch), and generation against 1 vs 2 replicas of a `workbench serve` server (greedy, the same output).

Both run the commands a user types (`workbench finetune [--processes 2]`, `workbench generate responses --api-base
... [--api-base ...]`) on a tiny Falcon; the ratios are what matter. On a 2-core machine two training processes
share the cores one process had (and add gloo's all-reduce), so they are not expected to be faster; two replicas
answer two requests at once where one server answers one at a time.

    .venv/bin/python bench/scale_out.py [--steps 40] [--prompts 48]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def workbench(*args: str) -> float:
    """Run a workbench command; its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"workbench {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def tiny_model(folder: Path, pretrained: bool) -> Path:
    from workbench.core.teaching import domain_texts
    from workbench.core.tiny import TinySpec, build_tiny_model, pretrain_tiny

    path = build_tiny_model(folder, TinySpec(arch="falcon"))
    if pretrained:  # so that it writes text, not noise, and answers of some length
        pretrain_tiny(path, domain_texts(listings=150), steps=150, seq_len=128, batch_size=16)
    return path


def finetune(work: Path, steps: int) -> dict:
    from workbench.core.catalog import SEED_TASKS
    from workbench.core.io import load_records

    model = tiny_model(work / "falcon", pretrained=False)
    records = [r for r in load_records(SEED_TASKS, []) if r.response]
    data = work / "curated.jsonl"
    data.write_text("".join(r.to_json() + "\n" for r in records))
    common = ["finetune", "--base", str(model), "--data", str(data), "--max-steps", str(steps), "--save-steps",
              str(steps), "--max-length", "512", "--eval-split", "0", "--quant", "none", "--no-grad-checkpointing",
              "--dropout", "0", "--no-packing"]
    rows = {}
    for name, extra in (("1 process, 4 rows a step", ["--batch-size", "4"]),
                        ("2 processes, 2 rows each", ["--batch-size", "2", "--processes", "2"])):
        out = work / name.split(",")[0].replace(" ", "-")
        wall = workbench(*common, *extra, "-o", str(out))
        manifest = json.loads((out / "manifest.json").read_text())
        rows[name] = {"wall_s": wall, "train_s": manifest["train_runtime_s"],
                      "tokens_per_s": manifest["useful_tokens_per_s"], "loss": manifest["train_loss"][-1]["loss"],
                      "effective_batch_rows": manifest["effective_batch_rows"]}
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generation(work: Path, prompts: int) -> dict:
    import httpx

    from workbench.core.catalog import SEED_TASKS
    from workbench.core.io import load_records

    model = tiny_model(work / "generator", pretrained=True)
    instructions = work / "instructions.jsonl"
    records = load_records(SEED_TASKS, [])
    instructions.write_text("".join(r.to_json() + "\n" for r in (records * 4)[:prompts]))
    servers, bases = [], []
    for _ in range(2):
        port = free_port()
        servers.append(subprocess.Popen([sys.executable, "-m", "workbench", "serve", "--model", str(model), "--name",
                                         "tiny", "--port", str(port), "--max-waiting", "16"], env=ENV,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        bases.append(f"http://127.0.0.1:{port}/v1")
    try:
        for base in bases:
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        rows, outputs = {}, []
        for name, used in (("1 replica", bases[:1]), ("2 replicas", bases)):
            out = work / f"{len(used)}.jsonl"
            wall = workbench("generate", "responses", str(instructions), "--model", "tiny", "--backend", "openai",
                             "--temperature", "0", "--max-new-tokens", "48", "--n", "2", "--concurrency", "2",
                             "-o", str(out), *[a for base in used for a in ("--api-base", base)])
            manifest = json.loads(out.with_name(f"{len(used)}.manifest.json").read_text())
            tokens = manifest.get("details", {}).get("usage", {}).get("completion_tokens")
            rows[name] = {"wall_s": wall, "requests_per_s": prompts / wall, "completion_tokens": tokens}
            outputs.append(out.read_text())
        rows["same output"] = outputs[0] == outputs[1]
        return rows
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--prompts", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        trained = finetune(work, args.steps)
        anchor = trained["1 process, 4 rows a step"]
        print(f"Finetune, {args.steps} steps of 4 rows (tiny Falcon, CPU):")
        for name, row in trained.items():
            print(f"  {name:26s} train {row['train_s']:6.1f} s ({anchor['train_s'] / row['train_s']:.2f}x), "
                  f"wall {row['wall_s']:6.1f} s ({anchor['wall_s'] / row['wall_s']:.2f}x), "
                  f"{row['tokens_per_s']:,.0f} trained tokens/s, last loss {row['loss']:.4f}")
        served = generation(work, args.prompts)
        one = served["1 replica"]
        print(f"Generation, {args.prompts} prompts, 48 new tokens, greedy, 2 in flight per replica:")
        for name in ("1 replica", "2 replicas"):
            row = served[name]
            print(f"  {name:26s} {row['wall_s']:6.1f} s, {row['requests_per_s']:.2f} requests/s "
                  f"({one['wall_s'] / row['wall_s']:.2f}x)")
        print(f"  the same output: {'yes' if served['same output'] else 'NO'}")


if __name__ == "__main__":
    main()

"""Finetuning in several processes (`workbench finetune --processes N`, a recipe's `stages.training`): accelerate
launch starts them (torchrun underneath: DDP over NCCL on GPUs, gloo on the CPU), each runs `pipelines.finetune.worker`
on the same spec; inside, the processes find their rank in the environment (`workbench.core.distributed`): every one
trains on its share of each step, the main one alone writes checkpoints and the adapter. This process keeps the
stage's own files and shows the main process's progress (it writes its step to a file here read back).

Typing `accelerate launch --num_processes N -m workbench finetune ...` instead runs the command itself in every
process, with the same division of work (and your own --config_file: FSDP, DeepSpeed, several machines).

The launcher's output on a failure is a page of tracebacks from every process; it goes to a log file beside the
adapter, and the run ends with one line: the error a process gave, or which process died of which signal, and the
last complete checkpoint that `--resume` continues from.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.finetune.config import FinetuneConfig
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.io import atomic_write_json
from workbench.core.processes import owned

SPEC_FILE = "launch.json"  # in the adapter folder: what every process runs
PROGRESS_FILE = "progress.json"  # in the adapter folder: the main process's step, for the progress bar here


class LaunchError(WorkbenchError):
    """A process of a several-process run failed; the message says which and what is left to resume from."""


def launch_command(spec: Path, processes: int, accelerate_config: Path | None = None) -> list[str]:
    """The accelerate launch command line for the worker on SPEC in `processes` processes."""
    # Without a config file, --multi_gpu selects torchrun (one process per GPU; on a machine without GPUs the
    # processes run on the CPU and talk over gloo); --cpu would start a single process.
    where = ["--config_file", str(accelerate_config)] if accelerate_config else [
        "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    count = ["--num_processes", str(processes)] if processes > 1 or not accelerate_config else []
    return [sys.executable, "-m", "accelerate.commands.launch", *where, *count, "-m", "pipelines.finetune.worker",
            str(spec)]


def train_in_processes(base: str, data: Path, out_dir: Path, config: FinetuneConfig, processes: int,
                       accelerate_config: Path | None, log: Path, *, ref_adapter: str | None = None,
                       resume: bool = False, device: str = "auto", data_sha256: str | None = None,
                       data_path: str | None = None, budget_gib: float | None = None,
                       progress=None) -> dict[str, Any]:
    """Train as `train` / `train_dpo` do, in several processes; returns the adapter's manifest. The main process
    prints its own lines (what `say` would hear); `progress` hears its steps. Raises LaunchError with one line when
    a process failed."""
    if accelerate_config is not None and not Path(accelerate_config).is_file():
        raise InputError(f"--accelerate-config {accelerate_config}: no such file")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = out_dir / SPEC_FILE
    progress_file = out_dir / PROGRESS_FILE
    progress_file.unlink(missing_ok=True)
    atomic_write_json(spec, {"base": base, "data": str(data), "out_dir": str(out_dir), "config": config.model_dump(),
                             "ref_adapter": ref_adapter, "resume": resume, "device": device,
                             "data_sha256": data_sha256, "data_path": data_path, "budget_gib": budget_gib,
                             "progress": str(progress_file)})
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as errors:
        # Its own session: the terminal's Ctrl-C comes to this process, which stops the launcher and every worker
        # (`owned`) before it says "interrupted"; nothing of the run goes on writing after that.
        process = subprocess.Popen(launch_command(spec, processes, accelerate_config), stderr=errors,
                                   start_new_session=True)
        with owned(process):
            while process.poll() is None:
                time.sleep(0.5)
                _show_progress(progress_file, progress)
            _show_progress(progress_file, progress)
    if process.returncode:
        raise LaunchError(failure_line(log.read_text(encoding="utf-8", errors="replace"), processes),
                          hint=resume_hint(out_dir / "checkpoints", log))
    return json.loads((out_dir / "manifest.json").read_text())


def _show_progress(path: Path, progress) -> None:
    if progress and path.exists():
        try:
            step = json.loads(path.read_text())
        except ValueError:
            return  # being replaced: the next poll reads it
        progress(step["step"], step["max_steps"])


@dataclass
class Launched:
    """What the stage needs of a launched training, as `train` returns it: the manifest and what was dropped."""

    manifest: dict[str, Any]
    too_long: list[tuple[Any, int]] = field(default_factory=list)
    no_response: list[Any] = field(default_factory=list)


def launched_result(manifest: dict[str, Any], items: list, record_of) -> Launched:
    """The records (or pairs) the processes dropped, found again by id among `items`."""
    by_id = {record_of(item).id: item for item in items}
    return Launched(manifest, [(by_id[d["id"]], d["tokens"]) for d in manifest["dropped_too_long"]],
                    [by_id[i] for i in manifest.get("dropped_no_response", [])])


def failure_line(text: str, processes: int) -> str:
    """One line for a failed launch: the workbench error a process printed, else the first process that died of a
    signal or exited non-zero (torchrun's "Root Cause" block), else the launcher's last line."""
    errors = [line for line in text.splitlines() if line.startswith("Error: ")]
    if errors:
        return errors[0].removeprefix("Error: ")
    cause = text.rsplit("Root Cause", 1)[-1]  # torchrun names the process that failed first there
    rank = re.search(r"rank\s*:\s*(\d+)", cause)
    exitcode = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    if rank and exitcode:
        code = int(exitcode.group(1))
        of = f" of {processes}" if processes > 1 else ""  # else the config file's count
        which = f"process {int(rank.group(1)) + 1}{of} (rank {rank.group(1)})"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"{which} was killed by {name}; the run stopped"
        return f"{which} exited with code {code}; the run stopped"
    lines = [line for line in text.splitlines() if line.strip()]
    return f"the launcher failed: {lines[-1].strip() if lines else 'no output'}"


def resume_hint(checkpoints: Path, log: Path) -> str:
    from pipelines.finetune.train import _checkpoints

    complete = _checkpoints(checkpoints.parent)
    where = (f"the last complete checkpoint, {complete[-1].name}, is in {checkpoints}: the same command with "
             f"--resume continues it" if complete else "no checkpoint was complete: the run starts again")
    return f"{where}; every process's output is in {log}"

"""`workbench finetune --processes N`: the same command in N processes, started by accelerate's launcher (torchrun
underneath: DDP over NCCL on GPUs, gloo on the CPU), and what to say when one of them fails.

What runs is exactly `accelerate launch --num_processes N -m workbench finetune ...` (the command without
--processes), which a user may also type, with their own --config_file (FSDP, DeepSpeed, several machines). Inside,
the processes find their rank in the environment (`workbench.core.distributed`): every one trains on its share of
each step, the main one alone writes and prints.

The launcher's own output on a failure is a page of tracebacks from every process; it goes to a log file beside the
adapter, and the run ends with one line: the error a process gave, or which process died of which signal, and the
last complete checkpoint that `--resume` continues from.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from workbench.core.errors import WorkbenchError


class LaunchError(WorkbenchError):
    """A process of a several-process run failed; the message says which and what is left to resume from."""


def launch_command(argv: list[str], processes: int, accelerate_config: Path | None = None) -> list[str]:
    """The accelerate launch command line for `workbench finetune ARGV` in `processes` processes."""
    # Without a config file, --multi_gpu selects torchrun (one process per GPU; on a machine without GPUs the
    # processes run on the CPU and talk over gloo); --cpu would start a single process.
    where = ["--config_file", str(accelerate_config)] if accelerate_config else [
        "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    count = ["--num_processes", str(processes)] if processes > 1 or not accelerate_config else []
    return [sys.executable, "-m", "accelerate.commands.launch", *where, *count, "-m", "workbench", "finetune", *argv]


def launch(argv: list[str], processes: int, log: Path, checkpoints: Path,
           accelerate_config: Path | None = None) -> None:
    """Run `workbench finetune ARGV` in `processes` processes; the main one's output comes through, the launcher's
    and the processes' errors go to `log`. Raises LaunchError with one line when any process failed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as errors:
        code = subprocess.run(launch_command(argv, processes, accelerate_config), stderr=errors).returncode
    if code:
        raise LaunchError(failure_line(log.read_text(encoding="utf-8", errors="replace"), processes),
                          hint=resume_hint(checkpoints, log))


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

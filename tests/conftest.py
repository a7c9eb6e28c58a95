"""Shared fixtures: offline hub settings, a per-test WORKBENCH_HOME, tiny models built once per session."""

import os

# Nothing in the suite may reach for a hub: set before transformers/datasets are imported anywhere.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ[_name] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def workbench_home(tmp_path, monkeypatch):
    home = tmp_path / "workbench-home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_falcon(tmp_path_factory):
    from workbench.core.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "falcon", TinySpec(arch="falcon"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from workbench.core.tiny import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", TinySpec(arch="llama"))


def _pretrained_tiny(folder, arch: str):
    from workbench.core.tiny import TinySpec, build_tiny_model, domain_texts, pretrain_tiny

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

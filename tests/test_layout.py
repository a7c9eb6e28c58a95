"""The layering rules: only workbench/cli.py knows the CLI framework; heavy imports stay lazy."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
LIBRARY = ["workbench", "pipelines", "annotation", "eval_suites"]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cli_imports_typer_or_click():
    offenders = [str(p.relative_to(ROOT)) for package in LIBRARY for p in (ROOT / package).rglob("*.py")
                 if p.name != "cli.py" and imported_modules(p) & {"typer", "click"}]
    assert offenders == []


def test_help_does_not_import_torch_transformers_or_argilla():
    code = ("import sys; from workbench.cli import app; "
            "print(sorted(m for m in ('torch', 'transformers', 'argilla', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_cli_reference_is_generated_from_the_current_commands(tmp_path):
    out = tmp_path / "cli.md"
    typer = Path(sys.executable).with_name("typer")
    subprocess.run([str(typer), "workbench.cli", "utils", "docs", "--name", "workbench", "--output", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    assert out.read_text() == (ROOT / "docs" / "cli.md").read_text(), "run `make docs` to regenerate docs/cli.md"

"""docs/notebook.ipynb is run as a person would run it (a Jupyter kernel, cell by cell, offline), so it cannot rot."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"


def test_the_notebook_holds_no_outputs_and_calls_only_the_public_api():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
    for step in ("build_tiny_pair", "generate_from_docs", "dedup", "screen", "finetune", "evaluate", "compare"):
        assert f"workbench.{step}(" in code, step


@pytest.mark.slow  # builds and trains the tiny pair, finetunes and evaluates (~3 minutes on 2 cores)
def test_the_notebook_runs_the_tiny_loop_offline(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    work = tmp_path / "notebook-run"
    assert "Kept" in shown and "Manifest:" in shown  # the stages' results printed themselves
    assert (work / "adapter" / "adapter_model.safetensors").exists()
    summary = json.loads((work / "summary.json").read_text())
    assert "course_advisor" in json.dumps(summary) and "course_advisor" in shown
    assert (work / "report.html").read_text().count("<html") == 1

"""The layering rules: the foundation (workbench/core) imports no stage and no app code; the stage packages import
the foundation and each other one way only (pipelines -> eval_suites -> annotation: finetune and preferences call
down to eval's scoring and judge, eval to annotation's agreement helpers, never back), never the app; no import
cycle between project modules; only the CLI knows the CLI framework; heavy imports stay lazy; docs/cli.md is
generated from the commands."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("workbench", "pipelines", "annotation", "eval_suites")
STAGES = ("pipelines", "annotation", "eval_suites")
# The stage packages from the top down: each may import those after it, never one before it (lazy imports included).
STAGE_ORDER = ("pipelines", "eval_suites", "annotation")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The project modules a file imports, at the top or inside functions (a lazy import is an import too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pipelines import dedup` imports the module pipelines.dedup; `from x.y import name`, x.y.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    return found


def floor(name: str) -> str:
    if name == "workbench.core" or name.startswith("workbench.core."):
        return "foundation"
    return "app" if name.split(".")[0] == "workbench" else "stage"


GRAPH = {name: {i for i in imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def test_the_foundation_imports_no_stage_and_no_app_module():
    offenders = {name: sorted(i for i in targets if floor(i) != "foundation")
                 for name, targets in GRAPH.items() if floor(name) == "foundation"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_stage_packages_import_the_foundation_and_each_other_never_the_app():
    offenders = {name: sorted(i for i in targets if floor(i) == "app")
                 for name, targets in GRAPH.items() if floor(name) == "stage"}
    assert {k: v for k, v in offenders.items() if v} == {}


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a stage package imports one above it in STAGE_ORDER."""
    rank = {package: i for i, package in enumerate(STAGE_ORDER)}
    return sorted((name, target) for name, targets in graph.items() for target in targets
                  if floor(name) == floor(target) == "stage"
                  and rank[target.split(".")[0]] < rank[name.split(".")[0]])


def test_the_stage_packages_import_each_other_one_way():
    assert sorted(STAGE_ORDER) == sorted(STAGES)
    assert upward_imports(GRAPH) == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_project_modules():
    assert cycles(GRAPH) == []


def test_the_checks_catch_what_they_are_for():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert floor("workbench.core.records") == "foundation" and floor("workbench.recipe") == "app"
    assert floor("pipelines.dedup") == "stage"
    assert "workbench.core.runs" in GRAPH["pipelines.dedup"]  # the graph sees what a stage imports
    assert "eval_suites.runner" in GRAPH["pipelines.finetune.suite_eval"]  # imported inside a function
    assert upward_imports({"eval_suites.runner": {"pipelines.screen", "workbench.core.io"},
                           "annotation.agreement": {"eval_suites.judge"},
                           "pipelines.preferences": {"eval_suites.judge"},
                           "eval_suites.judge_agreement": {"annotation.agreement"}}) == [
        ("annotation.agreement", "eval_suites.judge"), ("eval_suites.runner", "pipelines.screen")]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in MODULES.values()))
def test_only_the_cli_imports_typer_or_click(path):
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    used = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    used |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert path.startswith("workbench/cli/") or not used & {"typer", "click"}


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


def string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


@pytest.mark.parametrize("name, home", [
    ("abstain_recall", "eval_suites/metrics.py"),  # a metric: its function, tasks, direction, CI and report fields
    ("rating", "annotation/questions.py"),  # a review question kind: the Argilla question, read-back, agreement
    ("profanity-check", "workbench/core/scorers.py"),  # a toxicity scorer: its loading and scoring
])
def test_a_metric_a_question_kind_and_a_scorer_are_each_named_in_one_module(name, home):
    assert sorted(path for path, file in ((str(p.relative_to(ROOT)), p) for p in MODULES.values())
                  if name in string_constants(file)) == [home]


def test_display_reads_no_result_or_manifest_key_by_string():
    """Results print themselves (their summary lines, typed fields); display.py only lays them out."""
    tree = ast.parse((ROOT / "workbench" / "display.py").read_text(encoding="utf-8"))
    keyed = [ast.unparse(n) for n in ast.walk(tree)
             if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str)]
    keyed += [ast.unparse(n) for n in ast.walk(tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args
              and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)]
    assert keyed == []

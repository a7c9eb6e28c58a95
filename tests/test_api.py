"""The Python API (`import workbench`) and the CLI over it: the same names, and every default written once — in the
config model the option fills (or the library function it is passed to), read by both the API and the CLI."""

import inspect
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

import workbench
from annotation import review
from eval_suites.report import ReportConfig
from pipelines.bootstrap import BootstrapConfig
from pipelines.contamination import ContaminationConfig
from pipelines.dedup import DedupConfig
from pipelines.finetune import FinetuneConfig
from pipelines.from_docs import FromDocsConfig
from pipelines.instances import InstancesConfig
from pipelines.preferences import PairsConfig
from pipelines.responses import ResponsesConfig
from pipelines.screen import ScreenConfig
from workbench import api
from workbench.cli import app
from workbench.core.backends import BackendConfig
from workbench.core.config import defaults
from workbench.core.tiny import TinySpec
from workbench.serve import Limits

ROOT = Path(__file__).parent.parent

# Each command and the API function it is a thin call to (the CLI's defaults must be that function's).
CALLS = {
    "data import": api.import_data, "data export": api.export_data, "models tiny": api.build_tiny_model,
    "generate instructions": api.generate_instructions, "generate instances": api.generate_instances,
    "generate responses": api.generate_responses, "generate from-docs": api.generate_from_docs,
    "generate filter": api.filter_instructions, "dedup": api.dedup_config, "contamination": api.check_contamination,
    "screen": api.screen_config, "merge": api.merge, "annotate serve": api.serve_argilla, "annotate push": api.push,
    "annotate progress": api.class_progress,
    "annotate pull": api.pull, "annotate export": api.export_review, "annotate agreement": api.agreement,
    "annotate review-as-demo": api.review_as_demo, "eval suite draft": api.draft_suite,
    "eval run": api.evaluate, "eval score": api.score, "eval compare": api.compare,
    "eval judge-agreement": api.judge_agreement, "demo": api.demo, "run": api.run_recipe, "init": api.init,
}
# The config each API function (or command) fills: a parameter named as one of its fields defaults to the field's.
FILLS = [
    (api.generate_instructions, BootstrapConfig), (api.generate_instances, InstancesConfig),
    (api.generate_responses, ResponsesConfig), (api.generate_from_docs, FromDocsConfig),
    (api.dedup_config, DedupConfig), (api.screen_config, ScreenConfig), (api.check_contamination, ContaminationConfig),
    (api.compare, ReportConfig), (api.judge_agreement, ReportConfig), (api.export_data, PairsConfig),
    (api.build_tiny_model, TinySpec), (api.push, review.push_file), (api.pull, review.pull),
    *[(f, BackendConfig) for f in (api.generate_instructions, api.generate_instances, api.generate_responses,
                                   api.generate_from_docs, api.evaluate)],
]
COMMAND_FILLS = {"finetune": FinetuneConfig, "serve": Limits, "models check": BackendConfig,
                 "eval run": BackendConfig, "ask": BackendConfig, "chat": BackendConfig}


def commands(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def same(a, b) -> bool:
    """Defaults compared as a user sees them: a list and a tuple alike, a comma list and the tuple it parses to; None
    (not given) leaves the choice to the config."""
    if a is None:
        return True
    def norm(value):
        if isinstance(value, list | tuple):
            return ",".join(map(str, value))
        return str(value) if isinstance(value, Path) else value
    return norm(a) == norm(b)


def test_help_of_the_package_lists_the_loops_functions():
    text = pydoc.render_doc(workbench, renderer=pydoc.plaintext)
    for name in ("generate_instructions", "dedup", "screen", "push", "pull", "finetune", "evaluate", "compare",
                 "run_recipe", "demo"):
        assert f"\n    {name}(" in text, name
    assert "FUNCTIONS" in text


def test_the_package_names_are_exactly_the_api_functions():
    public = {name for name, value in vars(api).items()
              if inspect.isfunction(value) and value.__module__ == api.__name__ and not name.startswith("_")}
    assert set(workbench.__all__) == public
    assert all(getattr(workbench, name) is getattr(api, name) for name in public)
    with pytest.raises(AttributeError):
        workbench.not_a_function  # noqa: B018


def test_the_foundation_loads_without_the_stages_or_the_api():
    code = ("import sys, workbench.core.records; "
            "print(sorted(m for m in ('workbench.api', 'pipelines', 'annotation', 'eval_suites') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_every_command_calls_an_api_function_or_is_listed_as_a_direct_library_call():
    direct = {"data validate", "data stats", "models check", "finetune", "eval list", "runs list", "runs show",
              "inspect next-token", "ask", "chat", "serve", "doctor", "trace", "annotate stop", "annotate setup",
              "annotate users add", "annotate users list", "annotate users reset-password", "annotate users remove"}
    names = {name for name, _ in commands()}
    assert names == set(CALLS) | direct, "a new command: add it to CALLS (its API function) or to `direct`"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_cli_defaults_are_the_api_functions(name):
    command = dict(commands())[name]
    signature = inspect.signature(CALLS[name]).parameters
    compared = 0
    for param in command.params:
        if param.name in signature and signature[param.name].default is not inspect.Parameter.empty:
            assert same(param.default, signature[param.name].default), (name, param.name)
            compared += 1
    assert compared or name in ("eval score", "merge", "annotate export", "annotate review-as-demo"), name


@pytest.mark.parametrize("function, config", FILLS, ids=lambda x: getattr(x, "__name__", str(x)))
def test_api_defaults_are_the_config_fields(function, config):
    fields = vars(defaults(config))
    compared = [name for name, p in inspect.signature(function).parameters.items()
                if name in fields and p.default is not inspect.Parameter.empty]
    for name in compared:
        assert same(inspect.signature(function).parameters[name].default, fields[name]), (function.__name__, name)
    assert compared


@pytest.mark.parametrize("name", sorted(COMMAND_FILLS))
def test_cli_defaults_are_the_config_fields(name):
    command, fields = dict(commands())[name], vars(defaults(COMMAND_FILLS[name]))
    compared = [p for p in command.params if p.name in fields]
    for param in compared:
        assert same(param.default, fields[param.name]), (name, param.name)
    assert compared


def test_an_option_group_is_declared_once_and_appears_on_each_command_that_talks_to_a_model():
    for name in ("generate instructions", "generate instances", "generate responses", "generate from-docs",
                 "eval run"):
        options = {p.name for p in dict(commands())[name].params}
        assert {"backend", "api_base", "api_key", "api", "concurrency"} <= options, name
    cli = "".join(p.read_text() for p in (ROOT / "workbench" / "cli").glob("*.py"))
    assert cli.count('"transformers or openai."') == 1 and cli.count("$OPENAI_API_KEY") == 2  # Endpoint, Judge


def test_no_cli_module_is_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "workbench" / "cli").glob("*.py")}
    assert max(sizes.values()) <= 400, sizes

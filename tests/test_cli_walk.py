"""Every command, fed what users get wrong: the Typer app is walked, and each parameter gets bad values derived
from its type — a word for a number, a number out of its range, a missing file, a folder for a file (or a file for
a folder), an output that is one of the inputs. Each must exit 1 or 2 with a message naming the culprit, no
traceback, and every input file byte-identical afterwards.

A command needs a base invocation (BASE) that is valid apart from the one bad value, so that the error is the
bad value's and not another's; a new command without one fails `test_every_command_has_a_base_invocation`.
"""

import hashlib
import shutil
import types
import typing
from pathlib import Path

import pytest
import typer.main

from workbench.cli import app

# {good}: a record file; {model}: a tiny Falcon; {out}: a folder for outputs; {inputs}: the inputs folder.
NO_SERVER = "http://127.0.0.1:9"  # nothing listens there: commands that reach a server fail after their checks
BASE: dict[str, list[str]] = {
    "demo": ["--runs-dir", "{out}/runs"],
    "run": ["{inputs}/recipe.yaml", "--runs-dir", "{out}/runs", "--dry-run"],
    "dedup": ["{good}", "-o", "{out}/kept.jsonl"],
    "contamination": ["{good}", "--eval", "{good}"],
    "screen": ["{good}", "--scorer", "profanity-check", "-o", "{out}/screened.jsonl"],
    "finetune": ["--base", "{model}", "--data", "{good}", "-o", "{out}/adapter"],
    "merge": ["{inputs}/adapter", "-o", "{out}/merged"],
    "ask": ["What does it cost?", "--model", "{model}"],
    "chat": ["--model", "{model}"],
    "doctor": [],
    "serve": ["--model", "{model}"],
    "trace": ["abc123", "--run", "{inputs}/run"],
    "data import": ["{good}", "-o", "{out}/imported.jsonl"],
    "data validate": ["{good}"],
    "data export": ["{good}", "--format", "alpaca", "-o", "{out}/export.json"],
    "data stats": ["{good}"],
    "models tiny": ["{out}/tiny"],
    "models check": ["{model}"],
    "generate instructions": ["--model", "{model}", "-o", "{out}/instructions.jsonl"],
    "generate instances": ["{good}", "--model", "{model}", "-o", "{out}/instances.jsonl"],
    "generate responses": ["{good}", "--model", "{model}", "-o", "{out}/candidates.jsonl"],
    "generate from-docs": ["--model", "{model}", "--docs", "{inputs}/docs", "-o", "{out}/qa.jsonl"],
    "generate filter": ["{good}", "-o", "{out}/kept.jsonl"],
    "eval list": [],
    "eval run": ["--suite", "closed_qa", "--model", "{model}", "-o", "{out}/results"],
    "eval score": ["--suite", "closed_qa", "--predictions", "{good}"],
    "eval compare": ["{inputs}/results", "-o", "{out}/report"],
    "eval judge-agreement": ["--judge", "{model}", "--from", "{good}", "-o", "{out}/agreement.json"],
    "runs list": ["--runs-dir", "{inputs}/runs"],
    "runs show": ["demo", "--runs-dir", "{inputs}/runs"],
    "inspect next-token": ["The fee is", "--model", "{model}"],
    "annotate serve": ["--data-dir", "{out}/argilla"],
    "annotate stop": ["--data-dir", "{out}/argilla"],
    "annotate setup": ["--venv", "{out}/venv"],
    "annotate push": ["{good}", "--dataset", "d", "--api-url", NO_SERVER, "--api-key", "k"],
    "annotate pull": ["--dataset", "d", "-o", "{out}/pulled.jsonl", "--api-url", NO_SERVER, "--api-key", "k"],
    "annotate export": ["--dataset", "d", "-o", "{out}/backup.jsonl", "--api-url", NO_SERVER, "--api-key", "k"],
    "annotate agreement": ["--from", "{good}"],
    "annotate users add": ["ann", "--api-url", NO_SERVER, "--api-key", "k"],
    "annotate users list": ["--api-url", NO_SERVER, "--api-key", "k"],
    "annotate users reset-password": ["ann", "--api-url", NO_SERVER, "--api-key", "k"],
    "annotate users remove": ["ann", "--api-url", NO_SERVER, "--api-key", "k"],
    "annotate progress": ["--from", "{good}"],
    "annotate review-as-demo": ["--dataset", "d", "--api-url", NO_SERVER, "--api-key", "k"],
    "init": ["{out}/advisor", "--pages", "{inputs}/docs"],
    "eval suite draft": ["--pages", "{inputs}/docs", "-o", "{out}/suite"],
}

# Path parameters by what they name. Outputs may be missing (they are made), never an input; inputs must exist.
OUTPUTS = {"output", "clusters", "rejected", "report", "quarantine", "disputed", "out", "passwords"}
FOLDER_INPUTS = {"docs", "suites_dir", "adapter", "ref_adapter", "run", "catalog", "results", "runs_dir", "pages",
                 "suite"}
MADE_HERE = {("demo", "runs_dir"), ("run", "runs_dir"), ("annotate serve", "data_dir"), ("annotate stop", "data_dir"),
             ("annotate setup", "venv"), ("annotate push", "data_dir"), ("annotate pull", "data_dir"),
             ("annotate export", "data_dir"), ("annotate agreement", "data_dir"), ("annotate users add", "data_dir"),
             ("annotate review-as-demo", "data_dir"), ("init", "directory"), ("annotate users list", "data_dir"),
             ("annotate users reset-password", "data_dir"), ("annotate users remove", "data_dir"),
             ("annotate progress", "data_dir")}
# Where a folder input may also be a file, or the reverse, by design.
EITHER = {("contamination", "eval"), ("eval compare", "results"), ("eval run", "suites_dir"),
          ("eval score", "suites_dir"), ("eval list", "suites_dir"), ("trace", "run")}


def commands():
    def walk(group, prefix=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, (*prefix, name))
            else:
                yield " ".join((*prefix, name)), command

    return dict(walk(typer.main.get_command(app)))


def bare(annotation):
    """int, float, Path, str or bool, from an Annotated/Optional/list annotation."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    return annotation


def bad_values(name: str, command) -> list[tuple[str, str, list[str], str]]:
    """(case id, parameter, the invocation's arguments, what the message must name) for each bad value."""
    hints = typing.get_type_hints(command.callback, include_extras=True)
    base = BASE[name]
    cases = []
    for param in command.params:
        if param.name not in hints or param.name == "help":
            continue
        kind = bare(hints[param.name])
        option = next((o for o in param.opts if o.startswith("--")), None) if param.param_type_name == "option" \
            else None
        culprit = option or param.name.upper()

        def with_value(value: str, option=option, opts=param.opts) -> list[str]:
            return replaced(base, option, opts, value)

        if kind in (int, float):
            cases.append((f"{param.name}=word", param.name, with_value("many"), culprit))
            low, high = getattr(param, "min", None), getattr(param, "max", None)
            if low is not None:
                cases.append((f"{param.name}=below", param.name, with_value(str(low - 1)), culprit))
            if high is not None:
                cases.append((f"{param.name}=above", param.name, with_value(str(high + 1)), culprit))
            if low is None and high is None:  # the range is the config's: derived from its field's constraints
                for case, value in config_bounds(name, param.name, kind):
                    cases.append((f"{param.name}={case}", param.name, with_value(value), culprit))
        elif kind is Path and (name, param.name) not in MADE_HERE:
            if param.name in OUTPUTS:
                inputs = [a for a in base if a.startswith(("{good}", "{inputs}"))]
                if inputs and param.name != "out":
                    cases.append((f"{param.name}=input", param.name, with_value(inputs[0]), inputs[0]))
                continue
            cases.append((f"{param.name}=missing", param.name, with_value("{inputs}/missing.jsonl"),
                          "{inputs}/missing.jsonl"))
            if (name, param.name) not in EITHER:
                wrong = "{good}" if param.name in FOLDER_INPUTS else "{inputs}/a-folder"
                cases.append((f"{param.name}=wrong-kind", param.name, with_value(wrong), wrong))
    return cases


def config_models(name: str) -> list:
    """The config models whose fields a command's numeric options set (their constraints are the options' ranges)."""
    from eval_suites.contamination import ContaminationConfig
    from eval_suites.runner import EvalConfig
    from pipelines.bootstrap import BootstrapConfig
    from pipelines.finetune.config import FinetuneConfig
    from pipelines.from_docs import FromDocsConfig
    from pipelines.instances import InstancesConfig
    from pipelines.responses import ResponsesConfig
    from pipelines.screen import ScreenConfig
    from workbench.core.backends import BackendConfig
    from workbench.core.minhash import DedupConfig
    from workbench.core.models import GenerationParams
    from workbench.core.teaching import TinyModelConfig
    from workbench.serve import Limits

    generation = [GenerationParams, BackendConfig]
    return {"dedup": [DedupConfig], "contamination": [ContaminationConfig], "screen": [ScreenConfig],
            "finetune": [FinetuneConfig], "ask": [GenerationParams], "chat": [GenerationParams], "serve": [Limits],
            "models tiny": [TinyModelConfig], "generate instructions": [BootstrapConfig, *generation],
            "generate instances": [InstancesConfig, *generation], "generate responses": [ResponsesConfig, *generation],
            "generate from-docs": [FromDocsConfig, *generation], "eval run": [EvalConfig, *generation]}.get(name, [])


def config_bounds(name: str, option: str, kind: type) -> list[tuple[str, str]]:
    """(case, value) just outside the range the config's field of that name allows (ge/gt/le/lt)."""
    import annotated_types

    step = 1 if kind is int else 0.5
    for model in config_models(name):
        field = model.model_fields.get(option)
        if field is None:
            continue
        cases = []
        for bound in field.metadata:
            if isinstance(bound, annotated_types.Ge):
                cases.append(("below-config", str(bound.ge - step)))
            elif isinstance(bound, annotated_types.Gt):
                cases.append(("at-config-floor", str(bound.gt)))
            elif isinstance(bound, annotated_types.Le):
                cases.append(("above-config", str(bound.le + step)))
            elif isinstance(bound, annotated_types.Lt):
                cases.append(("at-config-ceiling", str(bound.lt)))
        return cases
    return []


def replaced(base: list[str], option: str | None, opts: list[str], value: str) -> list[str]:
    """The base invocation with VALUE for the option (or, for an argument, in place of the first positional)."""
    if option is None:
        positional = next(i for i, a in enumerate(base) if not a.startswith("-")
                          and (i == 0 or not base[i - 1].startswith("-")))
        return [*base[:positional], value, *base[positional + 1:]]
    given = [i for i, a in enumerate(base) if a in opts]
    if given:
        return [*base[:given[0] + 1], value, *base[given[0] + 2:]]
    return [*base, option, value]


CASES = [pytest.param(name, args, culprit, id=f"{name}:{case}")
         for name, command in commands().items() for case, _, args, culprit in bad_values(name, command)]


def test_every_command_has_a_base_invocation():
    assert set(commands()) == set(BASE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, fixtures):
    folder = tmp_path_factory.mktemp("inputs")
    shutil.copy(fixtures / "good_records.jsonl", folder / "good.jsonl")
    (folder / "a-folder").mkdir()
    (folder / "docs").mkdir()
    (folder / "docs" / "fees.md").write_text("# Fees\nThe semester fee is 980 EUR.\n")
    (folder / "recipe.yaml").write_text("name: walk\n")
    for empty in ("adapter", "run", "results", "runs"):
        (folder / empty).mkdir()
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("name", "args", "culprit"), CASES)
def test_a_bad_value_is_one_message_naming_it(name, args, culprit, inputs, tmp_path, tiny_falcon, invoke):
    places = {"{good}": str(inputs / "good.jsonl"), "{inputs}": str(inputs), "{out}": str(tmp_path),
              "{model}": str(tiny_falcon)}

    def filled(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    before = snapshot(inputs)
    result = invoke(*name.split(), *map(filled, args))
    output = result.output
    assert result.exit_code in (1, 2), output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit))
    flat = " ".join(output.replace("│", " ").split())  # rich wraps click's usage errors in a box
    assert filled(culprit) in flat or filled(culprit) in output.replace("\n", ""), output
    assert snapshot(inputs) == before

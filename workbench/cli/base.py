"""What every command module shares: the group class that turns the library's typed errors into one line, the
option types used across groups, and the few helpers that show a stage's result or its quarantined lines."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import click
import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from workbench import display
from workbench.core.config import error_lines
from workbench.core.errors import WorkbenchError
from workbench.core.io import refuse_overwrite, write_problems
from workbench.display import err_console, step_summary


def third_parties_to_a_log() -> Path:
    """Libraries' own output (transformers' loading bars and FutureWarnings, bitsandbytes' notices, every Python
    warning) goes to $WORKBENCH_HOME/logs/workbench.log instead of before the command's answer; returns the log.
    Set before any of them is imported: they read their settings then. TRANSFORMERS_VERBOSITY=info and
    HF_HUB_DISABLE_PROGRESS_BARS=0 in the environment bring them back."""
    import logging
    import os

    from workbench.core.io import workbench_home

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its fork warning, printed mid-answer
    log = workbench_home() / "logs" / "workbench.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()  # a read-only home: quiet still, without the log
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn(...) -> the py.warnings logger -> the log
    return log


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where the program is, as Ctrl-C's SIGINT is: the same `finally` blocks stop what was started."""


def _terminated(signum, frame):
    raise Interrupted()


class _Group(TyperGroup):
    """Turns the library's typed errors into `Error: ...` (and a hint) with exit code 1; an interrupt (Ctrl-C, or
    SIGTERM) into one line with 130 (143): by then everything the command started is stopped and nothing more is
    written (the library's `finally` blocks and `workbench.core.processes.owned`)."""

    def invoke(self, ctx):
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminated) if main else None
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            name = "SIGTERM" if isinstance(e, Interrupted) else "Ctrl-C"
            click.echo(f"Interrupted ({name}): stopped, with every process it had started; what was finished is "
                       "kept. The same command again continues (generation and `run` resume where they were; "
                       "`finetune` with --resume).", err=True)
            raise typer.Exit(143 if isinstance(e, Interrupted) else 130) from None
        except WorkbenchError as e:
            click.echo(f"Error: {e.message}", err=True)
            if e.hint:
                click.echo(f"Hint: {e.hint}", err=True)
            raise typer.Exit(1) from None
        except ValidationError as e:  # an option a config refused where no build_config named it
            for line in error_lines(e, "options"):
                click.echo(f"Error: {line}", err=True)
            raise typer.Exit(1) from None
        except OSError as e:  # the place, not the program: a full disk, a read-only folder, a file that went away
            if e.strerror is None:
                raise
            click.echo(f"Error: {e.filename + ': ' if e.filename else ''}{e.strerror}", err=True)
            raise typer.Exit(1) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)


def group(help: str) -> typer.Typer:
    return typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False, help=help)


def opt(help: str, *names: str):
    return typer.Option(*names, help=help)


Strict = Annotated[bool, opt("Exit 1 when any line is quarantined.", "--strict")]
AllowEmpty = Annotated[bool, opt("Exit 0 even when records were read and none was kept.", "--allow-empty")]
Port = Annotated[int, typer.Option(help="Port (1-65535).", min=1, max=65535)]
Output = Annotated[Path, opt("Records JSONL to write (appended to on resume).", "-o", "--output")]
Rejected = Annotated[Path | None, opt("Rejected candidates with their reasons (default: beside -o).")]
ModelName = Annotated[str, opt("Hub id or folder (transformers); model name (openai).", "--model")]
Seeds = Annotated[Path | None, opt("Seed tasks (default: the bundled course-advisor seeds).")]
Force = Annotated[bool, opt("Start again instead of resuming an existing output.")]
Preset = Annotated[str, opt("self-instruct, alpaca or none.")]
Rules = Annotated[Path | None, opt("YAML file of filter rules over the preset (keywords, ...).")]
Quarantine = Annotated[Path | None, opt("Where bad lines go (default: beside the output).")]
AdapterOption = Annotated[str | None, opt("LoRA adapter folder on top of --model.", "--adapter")]
QuantOption = Annotated[str, opt("none, 8bit or 4bit.", "--quant")]
AsJson = Annotated[bool, opt("Print JSON instead of tables.", "--json")]
RunsDir = Annotated[Path, opt("Where run folders live.")]
SuitesDir = Annotated[list[Path] | None, opt("A folder of your own suites, searched before the bundled ones "
                                             "(repeat the flag).", "--suites-dir")]


def sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name.removesuffix(path.suffix) + suffix)


def quarantine_file(given: Path | None, beside: Path, inputs: list) -> Path:
    """Where bad lines will go, refused before anything is read or written if it is one of the inputs."""
    path = given or sibling(beside, ".quarantine.jsonl")
    refuse_overwrite(path, inputs, "this command")
    return path


def quarantined(problems, where: Path, strict: bool) -> None:
    """Commands that read records without a stage's outputs: write the quarantine file, say where, honour --strict."""
    if problems:
        refuse_overwrite(where, {p.file for p in problems}, "this command")
        write_problems(where, problems)
        display.problems_summary(problems, str(where))
        if strict:
            raise typer.Exit(1)


def shown(result, strict: bool = False, summary=step_summary):
    """Show a stage's result; with --strict, exit 1 when it quarantined any input line."""
    summary(result)
    if strict and result.problems:
        raise typer.Exit(1)
    return result


def required(output: Path | None) -> Path:
    if output is None:
        raise typer.BadParameter("-o/--output is required unless --dry-run", param_hint="-o")
    return output


def warn(line: str) -> None:
    err_console.print(f"Warning: {line}", markup=False, highlight=False)

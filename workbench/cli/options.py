"""Option groups declared once, and every default read from the config model the option fills.

A group is a dataclass whose fields are Typer options; `@grouped` puts its fields in the place of a command's
parameter annotated with the group, and hands the command one instance. So `--backend/--api-base/--api-key/--api/
--concurrency` are written here once and appear on every command that talks to a model."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, get_type_hints

from workbench.cli.base import opt
from workbench.core.backends import BackendConfig
from workbench.core.config import defaults

BACKEND = defaults(BackendConfig)


@dataclass(frozen=True)
class Endpoint:
    """Where a model runs: in-process transformers, or OpenAI-compatible servers."""

    backend: Annotated[str, opt("transformers or openai.", "--backend")] = BACKEND.backend
    api_base: Annotated[list[str] | None, opt("OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default "
                                              "$OPENAI_BASE_URL); repeat for replicas of the model, which share the "
                                              "requests.")] = None
    api_key: Annotated[str | None, opt("API key (default $OPENAI_API_KEY); never printed.")] = None
    api: Annotated[str, opt("openai backend: completions or chat.")] = BACKEND.api
    concurrency: Annotated[int, opt("openai backend: requests in flight at once (on each --api-base).")] = \
        BACKEND.concurrency


@dataclass(frozen=True)
class Sampling:
    """Overrides of a generator's own sampling settings (None: the stage's default)."""

    max_new_tokens: Annotated[int | None, opt("Tokens generated per prompt at most.")] = None
    temperature: Annotated[float | None, opt("Sampling temperature (0 = greedy).")] = None
    batch_size: Annotated[int | None, opt("Prompts per batch (transformers backend).")] = None


@dataclass(frozen=True)
class Judge:
    """The model that judges pairs of answers (both orders): its backend and server."""

    judge_backend: Annotated[str, opt("The judge's backend: transformers or openai.")] = BACKEND.backend
    api_base: Annotated[list[str] | None, opt("OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default "
                                              "$OPENAI_BASE_URL); repeat for replicas of the model, which share the "
                                              "requests.")] = None
    api_key: Annotated[str | None, opt("API key (default $OPENAI_API_KEY); never printed.")] = None


@dataclass(frozen=True)
class ArgillaServer:
    """Which Argilla server: a URL and key, or the local server's folder (its credentials.json)."""

    api_url: Annotated[str | None, opt("Argilla server (default $ARGILLA_API_URL, else the local server's "
                                       "credentials.json).", "--api-url")] = None
    api_key: Annotated[str | None, opt("API key (default $ARGILLA_API_KEY); never printed.", "--api-key")] = None
    data_dir: Annotated[Path | None, opt("The local server's folder (default ~/.workbench/argilla).")] = None


GROUPS = (Endpoint, Sampling, Judge, ArgillaServer)
# What a command's group parameter defaults to (never used: `grouped` builds the group from its options).
ENDPOINT, SAMPLING, JUDGE, ARGILLA = Endpoint(), Sampling(), Judge(), ArgillaServer()


def grouped(command):
    """Replace each parameter of `command` annotated with an option group by the group's fields (as options), and
    call `command` with one instance of the group built from them."""
    signature = inspect.signature(command, eval_str=True)
    parameters, groups = [], {}
    for param in signature.parameters.values():
        if param.annotation in GROUPS:
            group = param.annotation
            hints = get_type_hints(group, include_extras=True)
            fields = [f.name for f in dataclasses.fields(group)]
            groups[param.name] = (group, fields)
            parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[name],
                                             default=getattr(group, name)) for name in fields]
        else:
            parameters.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise TypeError(f"{command.__name__}: an option of a group has the name of another parameter")

    @functools.wraps(command)
    def wrapper(**values):
        for name, (group, fields) in groups.items():
            values[name] = group(**{f: values.pop(f) for f in fields})
        return command(**values)

    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper

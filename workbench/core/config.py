"""Stage configs: frozen pydantic models loaded from YAML (the one YAML loader) and overridden by CLI flags."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from workbench.core.errors import ConfigError
from workbench.core.records import did_you_mean

C = TypeVar("C", bound=BaseModel)


def build_config(cls: type[C], values: dict[str, Any], where: str = "config") -> C:
    """Validate `values` as `cls`; unknown keys and bad values become one ConfigError naming each path."""
    known = tuple(cls.model_fields)
    unknown = [k for k in values if k not in known]
    if unknown:
        lines = [f"{where}: {k}: unknown key{did_you_mean(k, known)}" for k in unknown]
        raise ConfigError("\n".join(lines), hint=f"valid keys: {', '.join(known)}")
    try:
        return cls(**values)
    except ValidationError as e:
        raise ConfigError("\n".join(error_lines(e, where))) from None


def error_lines(error: ValidationError, where: str) -> list[str]:
    """`WHERE: a.b: reason` for each of pydantic's errors (no path where the whole config was refused); from
    command-line options (WHERE "options") the option as it was typed: `--max-new-tokens: reason`."""
    lines = []
    for err in error.errors():
        reason = err["msg"].removeprefix("Value error, ")
        named = [part for part in err["loc"] if isinstance(part, str)]
        if where == "options" and named:
            lines.append(f"--{named[-1].replace('_', '-')}: {reason}")
        else:
            lines.append(f"{where}: " + "".join(f"{p}." for p in err["loc"]).rstrip(".")
                         + (": " if err["loc"] else "") + reason)
    return lines


def load_yaml(path: str | Path) -> Any:
    """A YAML file's data; unreadable files and YAML errors become a ConfigError naming the file and line."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}:{(mark.line + 1) if mark else 1}: invalid YAML ({getattr(e, 'problem', e)})") \
            from None


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Config from a YAML file (optional) with `overrides` (CLI flags; None means 'not given') on top."""
    values: dict[str, Any] = {}
    where = "config"
    if path is not None:
        where = str(path)
        loaded = load_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(cls, values, where)


def options(cls: type[C], where: str = "options", **values: Any) -> C:
    """A config from command-line options; None means 'not given', so the config's default applies."""
    return build_config(cls, {k: v for k, v in values.items() if v is not None}, where)


def defaults(source: type[BaseModel] | Any) -> SimpleNamespace:
    """The defaults of a config model's fields (or of a function's keyword arguments) by name, e.g.
    `defaults(FinetuneConfig).epochs`: what the CLI's options and the Python API default to, never typed again."""
    if isinstance(source, type) and issubclass(source, BaseModel):
        return SimpleNamespace(**{name: field.get_default(call_default_factory=True)
                                  for name, field in source.model_fields.items()})
    if isinstance(source, type) and hasattr(source, "__dataclass_fields__"):
        source = source()  # a dataclass whose every field has a default
        return SimpleNamespace(**{name: getattr(source, name) for name in source.__dataclass_fields__})
    return SimpleNamespace(**{p.name: p.default for p in inspect.signature(source).parameters.values()
                              if p.default is not inspect.Parameter.empty})

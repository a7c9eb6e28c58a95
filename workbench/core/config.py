"""Stage configs: frozen pydantic models loaded from YAML, overridden by CLI flags, hashed for reruns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
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
        lines = [f"{where}: {'.'.join(str(p) for p in err['loc']) or '-'}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Config from a YAML file (optional) with `overrides` (CLI flags; None means 'not given') on top."""
    values: dict[str, Any] = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(cls, values, where)


def config_hash(config: BaseModel, exclude: set[str] | frozenset[str] = frozenset()) -> str:
    """sha256 of the config as sorted-key JSON, leaving out fields that do not change results."""
    spec: dict = {}
    for path in exclude:  # "settings.batch_size" leaves out a nested field
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = True
    data = config.model_dump(mode="json", exclude=spec)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

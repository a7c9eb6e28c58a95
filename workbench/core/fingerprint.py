"""One fingerprint for everything that decides whether earlier work can be reused: a stage skipped on rerun, a
generation run resumed, an eval answer taken from the cache.

A fingerprint is sha256 over the sorted-key JSON of named parts. A file or folder stands in by its content hash
(`path_sha256`), a pydantic config by its JSON dump without the fields that do not change results (batch size,
device). File hashes are memoised by (path, size, mtime) in $WORKBENCH_HOME/cache/file-sha256.json, so a 14 GB
model is read once, not on every run; a file rewritten with the same size and the same nanosecond mtime would be
taken for unchanged, which no ordinary write does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workbench.core.errors import InputError
from workbench.core.io import atomic_write_text, sha256_file, workbench_home

MEMO_LIMIT = 20_000  # memo entries kept; past this, entries of files that no longer exist are pruned


def _memo_path() -> Path:
    return workbench_home() / "cache" / "file-sha256.json"


def _load_memo() -> dict[str, Any]:
    try:
        return json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_memo(memo: dict[str, Any]) -> None:
    if len(memo) > MEMO_LIMIT:
        memo = {k: v for k, v in memo.items() if Path(k).exists()}
    atomic_write_text(_memo_path(), json.dumps(memo, indent=1) + "\n")


def _file_sha256(path: Path, memo: dict[str, Any]) -> str:
    stat = path.stat()
    key = str(path.resolve())
    known = memo.get(key)
    if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
        return known["sha256"]
    digest = sha256_file(path)
    memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return digest


def path_sha256(path: str | Path) -> str:
    """A file's sha256, or for a folder the sha256 of its sorted (relative path, file sha256) lines."""
    path = Path(path)
    memo = _load_memo()
    if path.is_file():
        digest = _file_sha256(path, memo)
    elif path.is_dir():
        hasher = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            hasher.update(f"{file.relative_to(path).as_posix()}\0{_file_sha256(file, memo)}\n".encode())
        digest = hasher.hexdigest()
    else:
        raise InputError(f"{path}: no such file or folder")
    _save_memo(memo)
    return digest


def config_data(config: BaseModel, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The config as JSON data without `exclude` ("settings.batch_size" leaves out a nested field)."""
    spec: dict = {}
    for dotted in exclude:
        *parents, leaf = dotted.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = True
    return config.model_dump(mode="json", exclude=spec)


def fingerprint(**parts: Any) -> str:
    """sha256 of the sorted-key JSON of `parts`; Paths are replaced by their content hash, configs by their data."""
    def canonical(value: Any) -> Any:
        if isinstance(value, Path):
            return path_sha256(value)
        if isinstance(value, BaseModel):
            return config_data(value)
        if isinstance(value, dict):
            return {str(k): canonical(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        return value

    return hashlib.sha256(json.dumps(canonical(parts), sort_keys=True).encode()).hexdigest()


def config_hash(config: BaseModel, exclude: set[str] | frozenset[str] = frozenset()) -> str:
    """The fingerprint of a config alone, leaving out fields that do not change results."""
    return fingerprint(config=config_data(config, exclude))

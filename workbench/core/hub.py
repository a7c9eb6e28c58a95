"""Telling hub ids from local paths, and saying plainly when the hub cannot be had."""

from __future__ import annotations

from pathlib import Path

from workbench.core.errors import HubUnavailableError

HINT = "download it where the hub is reachable and pass the local file or folder"


def looks_like_hub_id(name: str) -> bool:
    """'org/name' and not an existing path: what transformers and datasets would fetch from a hub."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(name).exists()


def hub_error(name: str, error: Exception) -> HubUnavailableError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return HubUnavailableError(f"{name}: not a local path, and loading it from the hub failed "
                               f"({type(error).__name__}: {first})", hint=HINT)

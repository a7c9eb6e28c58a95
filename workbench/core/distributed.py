"""Which process of a run this is, when a launcher (`accelerate launch`, torchrun) started several: they set
WORLD_SIZE, RANK and LOCAL_RANK. One process alone sees none of them and is the main one."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """The process that writes (checkpoints, adapter, manifests, plots) and speaks; the others only compute."""
    return rank() == 0


def process_device(device: str) -> str:
    """One GPU per process: plain "cuda" is this process's own (LOCAL_RANK) when several share the machine."""
    if device == "cuda" and world_size() > 1:
        return f"cuda:{local_rank()}"
    return device

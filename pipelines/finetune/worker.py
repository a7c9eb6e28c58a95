"""One process of a several-process finetune (`python -m pipelines.finetune.worker SPEC`, as accelerate launch
starts it from `pipelines.finetune.launch`): trains its share of every step, through the stage's own dispatch
(`stage.train_items`); the main process (rank 0) writes the checkpoints, the adapter and its manifest, prints, and
notes its step in the spec's progress file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.finetune.config import FinetuneConfig
from pipelines.finetune.stage import load_items, train_items
from workbench.core.distributed import is_main
from workbench.core.errors import WorkbenchError
from workbench.core.io import atomic_write_json


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    config = FinetuneConfig(**spec["config"])
    progress_file = Path(spec["progress"])

    def progress(step: int, max_steps: int) -> None:
        atomic_write_json(progress_file, {"step": step, "max_steps": max_steps})

    main_process = is_main()
    common = dict(resume=spec["resume"], device=spec["device"], data_sha256=spec["data_sha256"],
                  data_path=spec["data_path"], budget_gib=spec["budget_gib"],
                  progress=progress if main_process else None,
                  say=(lambda line: print(line, flush=True)) if main_process else None)
    train_items(spec["base"], load_items(Path(spec["data"]), config, []), spec["out_dir"], config,
                ref_adapter=spec["ref_adapter"], **common)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except WorkbenchError as e:  # one line, which the launching process shows (`launch.failure_line`)
        print(f"Error: {e.message}", file=sys.stderr)
        sys.exit(1)

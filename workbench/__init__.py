"""Instruct Workbench: build instruction-tuning data and evaluate the models trained on it.

The loop as Python functions, with the CLI's names and defaults (see `workbench.api`):

    build_tiny_pair       the demo's tiny base and instruct models (offline stand-ins for falcon-7b and -instruct)
    generate_instructions Self-Instruct from seed tasks        generate_instances  inputs/outputs per instruction
    generate_responses    N candidates per instruction          generate_from_docs  questions grounded in documents
    dedup                 MinHash LSH near-duplicates           screen              toxicity routes (pass/review/reject)
    push / pull           review in Argilla, curated set back   agreement           between annotators
    finetune              LoRA (SFT or DPO) on the curated set  evaluate / compare  suites, CIs, the HTML report
    init                  a recipe for your own pages (HTML, PDF, Markdown, text)
    run_recipe / demo     the whole loop from a recipe          (and import_data, export_data, merge, score, ...)

Each returns the stage's typed result; bad input raises workbench.core.errors.WorkbenchError (one line to show).
docs/notebook.ipynb runs the tiny loop offline with these functions.
"""

from __future__ import annotations

# The names of workbench.api, loaded on first use: `import workbench.core.records` (what every stage does) must not
# import the stages themselves (they import the foundation: a cycle, and seconds of imports for `--help`).
__all__ = [
    "build_tiny_model", "build_tiny_pair", "import_data", "export_data",
    "generate_instructions", "generate_instances", "generate_responses", "generate_from_docs", "filter_instructions",
    "dedup", "dedup_config", "preview_dedup", "drop_dedup_index", "check_contamination",
    "screen", "screen_config", "preview_screen",
    "serve_argilla", "connect_argilla", "push", "pull", "review_as_demo", "export_review", "agreement",
    "class_progress",
    "finetune", "finetune_config", "preview_finetune", "merge",
    "evaluate", "score", "compare", "judge_agreement", "draft_suite",
    "init", "run_recipe", "demo",
]


def __getattr__(name: str):
    if name in __all__:
        from workbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

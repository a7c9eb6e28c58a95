"""The `workbench` command line: a module per command group, each command a thin call to one function of
`workbench.api` (or one library entry) and one rendering of its result. The only package that knows Typer;
WorkbenchError becomes one line (and a hint) with exit code 1 (workbench/cli/base.py)."""

from workbench.cli import annotate, assistant, data, eval, generate, models, runs, stages
from workbench.cli.base import group, third_parties_to_a_log

app = group("Instruct Workbench: build instruction-tuning data and evaluate the models trained on it.")
for module in (runs, stages, assistant):  # top-level commands: demo, run, dedup, screen, finetune, ask, ...
    module.register(app)
for module in (data, models, generate, eval, runs, assistant, annotate):  # groups: `workbench data ...`, ...
    for name, sub in module.GROUPS.items():
        app.add_typer(sub, name=name)


def main() -> None:
    """The `workbench` program: libraries' own noise to a log (`third_parties_to_a_log`), then the command."""
    third_parties_to_a_log()
    app(prog_name="workbench")

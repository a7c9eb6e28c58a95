"""`python -m workbench ...` is the `workbench` command (what `accelerate launch -m workbench finetune ...` runs)."""

from workbench.cli import main

main()

"""The foundation every stage stands on: records, reading and writing them, run folders and the ledger, errors,
configs, fingerprints, models and generation backends, prompts, text helpers, the bundled catalog, tiny models.

Nothing here imports a stage package (`pipelines`, `annotation`, `eval_suites`) or the app (`workbench.cli`,
`workbench.recipe`, `workbench.steps`, ...): `tests/test_layout.py` keeps it so.
"""

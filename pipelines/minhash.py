"""The near-duplicate engine moved to the foundation, `workbench.core.minhash` (the dedup stage, the named index and
the eval contamination check all stand on it). These names stay importable from here for code outside the library
(bench/dedup.py, tests/conftest.py) until it imports them from there."""

from workbench.core.minhash import DedupConfig, find_duplicates, shingle_texts, shingles

__all__ = ["DedupConfig", "find_duplicates", "shingle_texts", "shingles"]

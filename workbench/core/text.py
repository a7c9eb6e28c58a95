"""Small text helpers shared by generation's grounding check and evaluation's groundedness metric."""

from __future__ import annotations

import re
import unicodedata

# A short English stop-word list (articles, pronouns, auxiliaries, prepositions, conjunctions): what is
# left of an answer after removing these are the words that must come from the context to be grounded.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves yes
also may might must shall us let get got per via
""".split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens (NFKC, \\w+)."""
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


def content_words(text: str) -> list[str]:
    """Words that carry content: not stop words, not one-letter tokens."""
    return [w for w in words(text) if w not in STOP_WORDS and len(w) > 1]


def grounding(answer: str, context: str) -> float:
    """Share of the answer's content words that occur in the context (1.0 for an answer with none)."""
    needed = content_words(answer)
    if not needed:
        return 1.0
    available = set(words(context))
    return sum(w in available for w in needed) / len(needed)

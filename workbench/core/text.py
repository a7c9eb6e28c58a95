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


# Characters that change what a text looks like without being seen: bidirectional controls (a right-to-left override
# makes "invoice\u202egpj.exe" read as "invoiceexe.jpg") and zero-width ones. The review shows each as a visible
# marker, ⟦U+202E⟧, which a pull turns back into the character; the screen sends a record holding one to review.
HIDDEN_CHARACTERS = frozenset(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_MARKER = re.compile(r"⟦U\+(200[B-F]|2060|FEFF|061C|202[A-E]|206[6-9])⟧")


def hidden_characters(text: str) -> list[str]:
    """The names of the hidden characters in TEXT, each once, in order of appearance."""
    return list(dict.fromkeys(unicodedata.name(ch, f"U+{ord(ch):04X}") for ch in text if ord(ch) in HIDDEN_CHARACTERS))


def show_hidden(text: str) -> str:
    """TEXT with each hidden character written as a visible marker: ⟦U+202E⟧."""
    return "".join(f"⟦U+{ord(ch):04X}⟧" if ord(ch) in HIDDEN_CHARACTERS else ch for ch in text)


def restore_hidden(text: str) -> str:
    """`show_hidden` undone: each marker back to its character."""
    return _MARKER.sub(lambda m: chr(int(m.group(1), 16)), text)

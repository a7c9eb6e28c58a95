"""The course-advisor assistant behind `ask` and `chat`: retrieve the catalog page that answers a question (BM25),
build the prompt the way finetuning and evaluation do (the seed's system prompt, the page as context), and stream
the answer token by token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workbench.core.models import GenerationParams, Model
from workbench.core.pages import read_pages
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, ANSWER_STOPS, build_prompt
from workbench.core.text import content_words


@dataclass(frozen=True)
class Page:
    name: str  # "Business Information Systems (MSc)"
    text: str
    path: Path


def terms(text: str) -> list[str]:
    """Content words and their adjacent pairs: "data science" must outweigh a rare word like "needed"."""
    words = content_words(text)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class Retriever:
    """BM25 (rank-bm25's Okapi) over whole catalog pages, on content words and word pairs; the page's title is
    counted three times, so a question naming a programme finds it."""

    def __init__(self, pages: list[Page]):
        from rank_bm25 import BM25Okapi

        self.pages = pages
        self.bm25 = BM25Okapi([terms(f"{p.name} {p.name} {p.name} {p.text}") for p in pages])

    @classmethod
    def from_catalog(cls, directory: str | Path) -> Retriever:
        return cls([Page(p.name, p.text, p.path) for p in read_pages(directory)[0]])

    def search(self, question: str, k: int = 3) -> list[tuple[Page, float]]:
        """The k best pages with their scores, best first; pages that share no word with the question left out."""
        words = terms(question)
        if not words:
            return []
        scores = self.bm25.get_scores(words)
        ranked = sorted(range(len(self.pages)), key=lambda i: -scores[i])[:k]
        return [(self.pages[i], float(scores[i])) for i in ranked if scores[i] > 0]


def advisor_prompt(question: str, context: str, tokenizer=None, system: str | None = ADVISOR_SYSTEM_PROMPT) -> str:
    return build_prompt(question, context, system, tokenizer)


def stream_answer(model: Model, prompt: str, params: GenerationParams | None = None) -> Iterator[str]:
    """The answer's text as it is generated; cut before the first stop string (never shown in part)."""
    from transformers import TextIteratorStreamer

    params = params or GenerationParams(max_new_tokens=128, stop=ANSWER_STOPS)
    # The timeout turns a generation thread that died into an error here instead of a wait forever.
    streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    encoded = model.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.model.device)
    kwargs = {**encoded, **model._generate_kwargs(params), "streamer": streamer}
    worker = threading.Thread(target=model.model.generate, kwargs=kwargs, daemon=True)
    worker.start()
    text, shown, stopped = "", 0, False
    hold = max((len(s) for s in params.stop), default=0)  # a stop string may arrive in pieces: hold that much back
    for piece in streamer:
        text += piece
        cut = min((i for s in params.stop if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            if cut > shown:
                yield text[shown:cut]
            stopped = True
            break
        safe = max(shown, len(text) - hold)
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    if not stopped and len(text) > shown:
        yield text[shown:]
    if stopped:
        for _ in streamer:  # let generation finish (it stops at the stop string itself)
            pass
    worker.join()


@dataclass
class Assistant:
    """A loaded model (with its adapter) and, with a catalog, the retriever that finds each question's page."""

    model: Model
    retriever: Retriever | None = None
    system_prompt: bool = True  # the course-advisor system prompt

    def page_for(self, question: str, previous: Page | None = None) -> Page | None:
        """The best page for the question; a follow-up that names no programme keeps the previous page."""
        found = self.retriever.search(question, k=1) if self.retriever else []
        return found[0][0] if found else previous

    def answer(self, question: str, page: Page | None, max_new_tokens: int = 128) -> Iterator[str]:
        prompt = advisor_prompt(question, page.text if page else "", self.model.tokenizer,
                                ADVISOR_SYSTEM_PROMPT if self.system_prompt else None)
        return stream_answer(self.model, prompt, GenerationParams(max_new_tokens=max_new_tokens, stop=ANSWER_STOPS))


def load_assistant(model: str, adapter: str | None = None, catalog: str | Path | None = None, quant: str = "none",
                   system_prompt: bool = True) -> Assistant:
    """The assistant as `ask`, `chat` and `serve` use it."""
    from workbench.core.models import get_model

    retriever = Retriever.from_catalog(catalog) if catalog else None
    return Assistant(get_model(model, quant=quant, adapter=adapter), retriever, system_prompt)

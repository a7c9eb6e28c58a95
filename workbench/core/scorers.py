"""Toxicity scorers by name: the screen stage (`pipelines.screen`) and the eval suites' toxicity rate
(`eval_suites.runner`) load them here, and every offline fallback reads `default_scorer_name`.

- detoxify: its own loading code (a hub model type where a network allows, or a local checkpoint with
  `checkpoint` and `hf_config`), run length-sorted in token-budget batches; optionally dynamic int8 on the CPU.
- profanity-check: alt-profanity-check, a small trained classifier shipped on PyPI (the `profanity` extra); it
  needs no download, so it is the fallback where detoxify's weights are not on disk.

Adding a scorer is one class here under `@register_scorer("name")` (a `name`, its `labels`, `score(texts)` giving
one row of label scores in [0, 1] per text, and `ready_offline()`), plus its test. torch, detoxify and
profanity_check are imported inside the functions that need them: the CLI's help stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.core.errors import WorkbenchError
from workbench.core.records import did_you_mean


class ScreenError(WorkbenchError):
    """The scorer could not load or run: nothing was written."""


class Scorer(Protocol):
    name: str
    labels: list[str]

    def score(self, texts: list[str]) -> np.ndarray: ...  # (len(texts), len(labels)) in [0, 1]


# name -> scorer class (built from the screen's settings: pipelines.screen.ScreenConfig), in registration order:
# the first whose model is on this machine is the offline default.
SCORERS: dict[str, type] = {}


def register_scorer(name: str) -> Callable[[type], type]:
    """Class decorator: the class becomes the scorer `name` (`load_scorer`, `ScreenConfig.scorer`, the fallback)."""
    def add(cls: type) -> type:
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = cls
        return cls
    return add


def scorer_names() -> tuple[str, ...]:
    return tuple(SCORERS)


def known_scorer(name: str) -> str:
    """`name` if a scorer is registered under it, else a ValueError naming the scorers (a config validator)."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}{did_you_mean(name, scorer_names())} "
                         f"(scorers: {', '.join(scorer_names())})")
    return name


class ScorerSettings(BaseModel):
    """What a scorer is built from. `pipelines.screen.ScreenConfig` takes these fields' defaults from here (its
    flags and recipe keys); eval's toxicity rate builds its scorer from them as they are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scorer: str = "detoxify"  # a name in SCORERS
    model: str = "original"  # detoxify model type: original, unbiased, multilingual
    checkpoint: str | None = None  # local detoxify checkpoint (a torch.load-able dict with config and state_dict)
    hf_config: str | None = None  # folder with the checkpoint's transformers config and tokenizer
    batch_tokens: int = Field(8192, ge=64)  # tokens per batch (texts sorted by length); speed only
    device: str = "auto"  # speed only
    int8: bool = False  # dynamic int8 linear layers on the CPU; the largest score change is measured and reported

    _known_scorer = field_validator("scorer")(known_scorer)


def load_scorer(config: Any) -> Scorer:
    """The scorer `config.scorer` names, built from its settings (ScorerSettings' fields: `ScreenConfig` has them)."""
    return SCORERS[config.scorer](config)


def default_settings() -> ScorerSettings:
    """The offline default scorer with the default settings: what eval's toxicity rate scores with."""
    return ScorerSettings(scorer=default_scorer_name())


def default_scorer_name() -> str:
    """What the demo, recipes and eval score toxicity with where nobody names a scorer: the first registered
    scorer ready offline (detoxify when a previous download left its weights on disk, else profanity-check)."""
    return next(name for name, cls in SCORERS.items() if cls.ready_offline())


def cached_detoxify_weights(model: str = "original") -> Path | None:
    """detoxify's checkpoint for `model` if a previous download left it in torch's hub cache, else None."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    path = Path(torch.hub.get_dir()) / "checkpoints" / MODEL_URLS[model].rsplit("/", 1)[-1]
    return path if path.exists() else None


@register_scorer("detoxify")
class DetoxifyScorer:
    """detoxify's model and tokenizer, run length-sorted in token-budget batches under inference_mode."""

    @staticmethod
    def ready_offline() -> bool:
        return cached_detoxify_weights() is not None

    def __init__(self, config: Any):
        from detoxify import Detoxify

        from workbench.core.models import resolve_device

        self.device = resolve_device(config.device)
        try:
            model = Detoxify(config.model, checkpoint=config.checkpoint, device=self.device,
                             huggingface_config_path=config.hf_config)
        except Exception as e:  # download, file, config and shape errors all mean the same: no scores
            raise ScreenError(f"detoxify ({config.checkpoint or config.model}) did not load: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                              hint="pass --checkpoint and --hf-config, or use --scorer profanity-check offline") from e
        self.model, self.tokenizer, self.labels = model.model.eval(), model.tokenizer, list(model.class_names)
        self.name = f"detoxify:{config.checkpoint or config.model}"
        self.batch_tokens = config.batch_tokens
        self.max_length = min(getattr(self.tokenizer, "model_max_length", 512) or 512, 512)
        self.deviation: float | None = None  # with int8: largest |int8 - fp32| score on the first texts
        self.full_precision = None
        if config.int8:
            import torch

            if self.device != "cpu":
                raise ScreenError("--int8 is dynamic int8 for the CPU", hint="leave it off on a GPU")
            self.full_precision = self.model
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
            self.name += " (int8)"

    def score(self, texts: list[str]) -> np.ndarray:
        scores = self._score(self.model, texts)
        if self.full_precision is not None and self.deviation is None and texts:
            sample = texts[:64]
            self.deviation = float(np.abs(self._score(self.full_precision, sample) - scores[:len(sample)]).max())
        return scores

    def _score(self, model, texts: list[str]) -> np.ndarray:
        import torch

        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * lengths[order[end]] <= self.batch_tokens:
                end += 1
            batch = order[start:end]
            inputs = self.tokenizer([texts[i] for i in batch], return_tensors="pt", truncation=True,
                                    max_length=self.max_length, padding=True).to(self.device)
            with torch.inference_mode():
                out[batch] = torch.sigmoid(model(**inputs)[0]).float().cpu().numpy()
            start = end
        return out


@register_scorer("profanity-check")
class ProfanityScorer:
    """alt-profanity-check: a linear classifier over character n-grams, trained on offensive language."""

    labels = ["profanity"]
    name = "profanity-check"

    @staticmethod
    def ready_offline() -> bool:
        return True  # shipped on PyPI with its model: nothing to download

    def __init__(self, config: Any):
        try:
            from profanity_check import predict_prob
        except ImportError as e:
            raise ScreenError("the profanity-check scorer needs the `profanity` extra",
                              hint="pip install 'instruct-workbench[profanity]'") from e
        self._predict = predict_prob

    def score(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._predict(texts), dtype=np.float32).reshape(-1, 1)

"""Generation backends behind one protocol: `complete(prompts, params) -> list[Completion]`, order kept.

- `transformers`: a local model (hub id or folder) loaded by `workbench.core.models.get_model`.
- `openai`: any OpenAI-compatible completions or chat endpoint (vLLM, TGI, llama.cpp server,
  `transformers serve`): how generation scales past one GPU.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import ConfigError, WorkbenchError
from workbench.core.models import Completion, GenerationParams, get_model
from workbench.core.records import did_you_mean


class BackendError(WorkbenchError):
    """A generation backend failed after its retries."""


class Backend(Protocol):
    name: str
    backend: str
    usage: Counter

    def complete(self, prompts: list[str], params: GenerationParams | None = None) -> list[Completion]: ...

    def generate(self, prompts: list[str], params: GenerationParams | None = None) -> list[str]: ...


class BackendConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["transformers", "openai"] = "transformers"
    model: str  # hub id or local folder (transformers); the served model's name (openai)
    quant: Literal["none", "8bit", "4bit"] = "none"  # transformers only
    adapter: str | None = None  # transformers only: a LoRA adapter folder on top of the model
    device: str = "auto"  # transformers only
    api_base: str | None = None  # openai only; default $OPENAI_BASE_URL
    api: Literal["completions", "chat"] = "completions"  # openai only: which endpoint
    concurrency: int = Field(4, ge=1)  # openai only: requests in flight at once
    timeout: float = Field(120.0, gt=0)  # openai only: seconds per request
    max_retries: int = Field(5, ge=0)  # openai only: retries with exponential backoff


class OpenAIModel:
    """An OpenAI-compatible server; retries and backoff come from the `openai` client itself."""

    backend = "openai"

    def __init__(self, model: str, api_base: str | None = None, api_key: str | None = None,
                 api: str = "completions", concurrency: int = 4, timeout: float = 120.0, max_retries: int = 5):
        import openai

        self.name = model
        self.api = api
        self.concurrency = concurrency
        self.usage: Counter = Counter()
        base = api_base or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise ConfigError("the openai backend needs a server address",
                              hint="pass --api-base http://HOST:PORT/v1 or set OPENAI_BASE_URL")
        # Local servers (vLLM, transformers serve) ignore the key, but the client insists on one.
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = openai.OpenAI(base_url=base, api_key=key, timeout=timeout, max_retries=max_retries)
        self.base_url = base

    def generate(self, prompts: list[str], params: GenerationParams | None = None) -> list[str]:
        return [c.text for c in self.complete(prompts, params)]

    def complete(self, prompts: list[str], params: GenerationParams | None = None) -> list[Completion]:
        params = params or GenerationParams()
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = list(pool.map(lambda p: self._one(p, params), prompts))
        for c in results:
            self.usage.update(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, requests=1)
        return results

    def _one(self, prompt: str, params: GenerationParams) -> Completion:
        import openai

        from workbench.core.models import cut_at_stop

        common: dict[str, Any] = {"model": self.name, "max_tokens": params.max_new_tokens,
                                  "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
        if params.stop:
            common["stop"] = list(params.stop)[:4]  # the API accepts at most four; the rest are cut below
        try:
            if self.api == "chat":
                reply = self.client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **common)
                choice, text = reply.choices[0], reply.choices[0].message.content or ""
            else:
                reply = self.client.completions.create(prompt=prompt, **common)
                choice, text = reply.choices[0], reply.choices[0].text or ""
        except openai.APIError as e:
            # The message never carries the key: the client does not put it in errors.
            hint = ("a model without a chat template cannot answer the chat endpoint: try --api completions"
                    if self.api == "chat" and isinstance(e, openai.InternalServerError) else None)
            raise BackendError(f"{self.base_url}: {type(e).__name__}: {getattr(e, 'message', e)}", hint) from None
        usage = reply.usage
        cut = cut_at_stop(text, params.stop)
        reason = "stop" if len(cut) < len(text) else (choice.finish_reason or "stop")
        return Completion(cut, reason, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)


def load_backend(config: BackendConfig, api_key: str | None = None) -> Backend:
    """The backend the config names, ready to generate."""
    if config.backend == "transformers":
        return get_model(config.model, quant=config.quant, device=config.device, adapter=config.adapter)
    if config.backend == "openai":
        if config.adapter:
            raise ConfigError("--adapter works with the transformers backend only",
                              hint="serve the adapter (vLLM --enable-lora, or merge it) and name it as the model")
        return OpenAIModel(config.model, config.api_base, api_key, config.api, config.concurrency,
                           config.timeout, config.max_retries)
    raise ConfigError(f"unknown backend {config.backend!r}{did_you_mean(config.backend, BACKENDS)}")


BACKENDS = ("transformers", "openai")

"""Generation backends behind one protocol: `complete(prompts, params) -> list[Completion]`, order kept.

- `transformers`: a local model (hub id or folder) loaded by `workbench.core.models.get_model`.
- `openai`: any OpenAI-compatible completions or chat endpoint (vLLM, TGI, llama.cpp server,
  `transformers serve`): how generation scales past one GPU; several replicas of one model (`api_base` a list)
  share the work (`Replicas`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import ConfigError, WorkbenchError
from workbench.core.models import Completion, Generates, GenerationParams, failed, get_model, without_controls
from workbench.core.records import did_you_mean
from workbench.core.urls import masked


class BackendError(WorkbenchError):
    """A generation backend failed after its retries."""


class EndpointDown(BackendError):
    """A server did not answer (no connection, a timeout, a 5xx or 429) after its retries: the server's fault, not
    the request's, so another replica may answer it."""


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
    # openai only; default $OPENAI_BASE_URL. Several: replicas of one model, the requests spread over them.
    api_base: str | list[str] | None = None
    api: Literal["completions", "chat"] = "completions"  # openai only: which endpoint
    concurrency: int = Field(4, ge=1)  # openai only: requests in flight at once (on each replica)
    timeout: float = Field(120.0, gt=0)  # openai only: seconds per request
    max_retries: int = Field(5, ge=0)  # openai only: retries with exponential backoff


class OpenAIModel(Generates):
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
        self.shown = masked(base)  # what messages name: the address without its credentials
        self.busy_patience = 600.0  # seconds of 429s waited out before the server counts as down

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
        busy = 0.0  # seconds waited out on 429s: the server is busy, not broken
        while True:
            try:
                if self.api == "chat":
                    reply = self.client.chat.completions.create(messages=[{"role": "user", "content": prompt}],
                                                                **common)
                    choice, text = reply.choices[0], reply.choices[0].message.content or ""
                else:
                    reply = self.client.completions.create(prompt=prompt, **common)
                    choice, text = reply.choices[0], reply.choices[0].text or ""
                break
            except openai.RateLimitError as e:  # the client's own retries are spent: wait as the server asks
                delay = retry_after(e.response, default=min(2.0 + busy / 4, 30.0))
                if busy + delay > self.busy_patience:
                    raise EndpointDown(f"{self.shown}: busy (HTTP 429) for {busy:.0f} s", None) from None
                time.sleep(delay)
                busy += delay
            except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
                # Refused for itself (too long for the model, a character the server rejects): this record only.
                return failed(f"refused by the server: HTTP {e.status_code}: {_message(e)}")
            except openai.APIError as e:
                # The message never carries the key: the client does not put it in errors.
                hint = ("a model without a chat template cannot answer the chat endpoint: try --api completions"
                        if self.api == "chat" and isinstance(e, openai.InternalServerError) else None)
                if isinstance(e, openai.NotFoundError) and not self.base_url.rstrip("/").endswith("/v1"):
                    hint = f"OpenAI-compatible servers answer under /v1: --api-base {self.shown.rstrip('/')}/v1"
                down = isinstance(e, openai.APIConnectionError | openai.InternalServerError)
                raise (EndpointDown if down else BackendError)(
                    f"{self.shown}: {type(e).__name__}: {_message(e)}", hint) from None
        usage = reply.usage
        cut, removed = without_controls(cut_at_stop(text, params.stop))
        reason = "stop" if len(cut) < len(text) else (choice.finish_reason or "stop")
        return Completion(cut, reason, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                          controls_removed=removed)


def retry_after(response, default: float) -> float:
    """Seconds a 429's Retry-After header asks for (bounded to 1-60 s), else DEFAULT."""
    try:
        return min(max(float(response.headers.get("retry-after")), 1.0), 60.0)
    except (TypeError, ValueError, AttributeError):
        return default


def _message(error) -> str:
    return str(getattr(error, "message", error))


class Replicas(Generates):
    """Several servers of one model as one backend: each has `concurrency` requests in flight, a free one takes the
    next prompt, so a faster server takes more. A server that stays down through its retries (`EndpointDown`) is
    taken out of rotation and its requests are sent to the others; a request refused for itself (a 400) fails the
    call as with one server. Every prompt is answered once, in order; `out_of_rotation` says which servers left
    and why, and `say` is told when one does."""

    backend = "openai"

    def __init__(self, servers: list[OpenAIModel], say: Callable[[str], None] | None = None):
        self.servers, self.say = servers, say
        self.name = servers[0].name
        self.usage: Counter = Counter()
        self.out_of_rotation: dict[str, str] = {}  # base url -> the error that took it out

    def complete(self, prompts: list[str], params: GenerationParams | None = None) -> list[Completion]:
        params = params or GenerationParams()
        results: list[Completion | None] = [None] * len(prompts)
        pending: queue.Queue[int] = queue.Queue()
        for i in range(len(prompts)):
            pending.put(i)
        lock = threading.Lock()
        failed: list[BackendError] = []

        def unanswered() -> bool:
            return any(r is None for r in results) and not failed

        def work(server: OpenAIModel) -> None:
            while unanswered() and server.base_url not in self.out_of_rotation:
                try:
                    i = pending.get(timeout=0.05)  # another server's request may still come back
                except queue.Empty:
                    continue
                try:
                    results[i] = server._one(prompts[i], params)
                except EndpointDown as e:
                    pending.put(i)
                    with lock:
                        if server.base_url not in self.out_of_rotation:
                            reason = e.message.removeprefix(f"{server.shown}: ").rstrip(".")
                            self.out_of_rotation[server.base_url] = reason
                            if self.say:
                                self.say(f"{server.shown} is out of rotation ({reason} after "
                                         f"{server.client.max_retries} retries); its requests go to the others")
                except BackendError as e:
                    failed.append(e)

        live = [s for s in self.servers if s.base_url not in self.out_of_rotation]
        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in live for _ in range(s.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]
        if any(r is None for r in results):
            reasons = "; ".join(f"{masked(url)}: {why}" for url, why in self.out_of_rotation.items())
            raise BackendError(f"every server is out of rotation: {reasons}",
                               hint="start them again and rerun: what was generated is kept, the run resumes")
        for c in results:
            self.usage.update(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, requests=1)
        return results  # type: ignore[return-value]


def take_usage(total: Counter, *backends: Backend) -> dict[str, int]:
    """Token bookkeeping of a generation stage: what each backend counted since the last call (prompt and completion
    tokens, requests) moved into the run's `total`; returns it as a plain dict, for the stage's resumable state."""
    for backend in backends:
        total.update(backend.usage)
        backend.usage.clear()
    return dict(total)


def api_bases(config: BackendConfig) -> list[str | None]:
    """The servers a config names: its api_base, one or several (none: $OPENAI_BASE_URL)."""
    if isinstance(config.api_base, list):
        return list(config.api_base) or [None]
    return [config.api_base]


def load_backend(config: BackendConfig, api_key: str | None = None,
                 say: Callable[[str], None] | None = None) -> Backend:
    """The backend the config names, ready to generate."""
    if config.backend == "transformers":
        return get_model(config.model, quant=config.quant, device=config.device, adapter=config.adapter)
    if config.backend == "openai":
        if config.adapter:
            raise ConfigError("--adapter works with the transformers backend only",
                              hint="serve the adapter (vLLM --enable-lora, or merge it) and name it as the model")
        servers = [OpenAIModel(config.model, base, api_key, config.api, config.concurrency, config.timeout,
                               config.max_retries) for base in api_bases(config)]
        if len({s.base_url for s in servers}) < len(servers):
            raise ConfigError("the same --api-base twice: each replica once")
        return servers[0] if len(servers) == 1 else Replicas(servers, say)
    raise ConfigError(f"unknown backend {config.backend!r}{did_you_mean(config.backend, BACKENDS)}")


BACKENDS = ("transformers", "openai")

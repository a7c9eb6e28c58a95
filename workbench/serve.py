"""An OpenAI-compatible endpoint for a local model with an optional LoRA adapter (what `transformers serve` cannot
load): `/v1/models`, `/v1/completions` and `/v1/chat/completions` (streamed too). Chat requests become the
course-advisor prompt (`build_prompt`: the seed's system prompt unless the request brings its own, and with a
catalog, the best-matching page as context), so any OpenAI client talks to the finetuned assistant.

A request is bounded before it costs anything (`Limits`): a body over --max-body is refused (413) before it is
read in full, a prompt that with max_tokens does not fit the model's context is refused (400) before generation,
and at most --max-waiting requests are answered or queued at once (429 beyond, with Retry-After); one generation
runs at a time, and its memory is given back after each request."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from workbench.core.models import GenerationParams, Model, context_length, release_memory
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, ANSWER_STOPS, build_prompt


class CompletionRequest(BaseModel):
    model: str
    prompt: str | list[str]
    max_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int = 0
    n: int = Field(1, ge=1, le=16)  # choices per prompt (sampled: each its own draw when temperature > 0)


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int = 0
    stream: bool = False
    n: int = Field(1, ge=1, le=16)


class Limits(BaseModel):
    max_body: int = Field(1_000_000, ge=1)  # bytes of one request's body
    # Requests being answered or queued at once; more are refused (429, with Retry-After). 16: four clients at the
    # generation commands' default --concurrency (4) are never refused.
    max_waiting: int = Field(16, ge=1)


class BodyLimit:
    """ASGI middleware: a body longer than `max_body` bytes gets 413 without being read past the limit (by its
    Content-Length at once; a chunked body when its bytes pass the limit)."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await self._refuse(send)
        # Read the (at most max_body) body here, then hand it to the app as one message.
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await self._refuse(send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        message = (f"request body is larger than this server's --max-body of {self.max_body:,} bytes")
        payload = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                        "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _params(request, default_stop: tuple[str, ...] = ()) -> GenerationParams:
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    return GenerationParams(max_new_tokens=request.max_tokens, temperature=request.temperature,
                            top_p=request.top_p, stop=tuple(stop) + default_stop, seed=request.seed)


def chat_prompt(model: Model, messages: list[Message], retriever=None) -> str:
    """The last user message as the question; the request's system message, else the advisor's; with a
    retriever, the best page for the question (or, failing that, for the earlier user turns) as context."""
    system = next((m.content for m in messages if m.role == "system"), ADVISOR_SYSTEM_PROMPT)
    users = [m.content for m in messages if m.role == "user"]
    question = users[-1] if users else messages[-1].content
    context = ""
    if retriever is not None:
        for text in [question, *reversed(users[:-1])]:
            found = retriever.search(text, k=1)
            if found:
                context = found[0][0].text
                break
    return build_prompt(question, context, system, model.tokenizer)


def create_app(model: Model, name: str, retriever=None, limits: Limits | None = None):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    limits = limits or Limits()
    app = FastAPI(title="Instruct Workbench assistant")
    app.add_middleware(BodyLimit, max_body=limits.max_body)
    lock = threading.Lock()  # one generation at a time: the model is not shared between threads
    admitted = threading.BoundedSemaphore(limits.max_waiting)  # answered + queued behind the lock
    context = context_length(model)

    @app.exception_handler(HTTPException)
    def openai_error(request: Request, error: HTTPException) -> JSONResponse:
        # OpenAI clients read the message from {"error": {"message": ...}}.
        return JSONResponse({"error": {"message": error.detail, "type": "invalid_request_error"}},
                            status_code=error.status_code, headers=error.headers)

    def check(requested: str) -> None:
        if requested != name:
            raise HTTPException(404, f"model {requested!r} is not served here; this server has {name!r}")

    def check_fits(prompts: list[str], max_tokens: int) -> None:
        """A prompt that cannot fit is refused now, not after minutes of attention over it (or a 500)."""
        if context is None:
            return
        for prompt in prompts:
            tokens = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if tokens + max_tokens > context:
                raise HTTPException(400, f"prompt is {tokens:,} tokens; with max_tokens {max_tokens:,} that is "
                                         f"more than the model's context of {context:,} tokens")

    def admit() -> None:
        if not admitted.acquire(blocking=False):
            raise HTTPException(429, f"busy: {limits.max_waiting} request(s) are being answered or waiting "
                                     "(--max-waiting); try again shortly", headers={"Retry-After": "1"})

    def generate(prompts: list[str], params: GenerationParams):
        try:
            with lock:
                return model.complete(prompts, params)
        finally:
            release_memory()
            admitted.release()

    def usage(completions) -> dict[str, int]:
        prompt, completion = sum(c.prompt_tokens for c in completions), sum(c.completion_tokens for c in completions)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "workbench"}]}

    @app.post("/v1/completions")
    def completions(request: CompletionRequest) -> dict[str, Any]:
        check(request.model)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        check_fits(prompts, request.max_tokens)
        admit()
        # n choices per prompt, in OpenAI's order: every choice of the first prompt, then the second's
        done = generate([p for p in prompts for _ in range(request.n)], _params(request))
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": name, "usage": usage(done),
                "choices": [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                            for i, c in enumerate(done)]}

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):
        check(request.model)
        prompt = chat_prompt(model, request.messages, retriever)
        params = _params(request, ANSWER_STOPS)
        check_fits([prompt], request.max_tokens)
        if request.stream and request.n > 1:
            raise HTTPException(400, "n > 1 is not streamed here: ask without stream, or once per answer")
        admit()
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if request.stream:
            return StreamingResponse(_stream(prompt, params, ident, created), media_type="text/event-stream")
        done = generate([prompt] * request.n, params)
        return {"id": ident, "object": "chat.completion", "created": created, "model": name, "usage": usage(done),
                "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                             "finish_reason": c.finish_reason} for i, c in enumerate(done)]}

    def _stream(prompt: str, params: GenerationParams, ident: str, created: int):
        from workbench.assistant import stream_answer

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n"

        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                release_memory()
                admitted.release()

        try:  # admitted already; released when the answer is complete, or the client goes away
            with lock:
                yield chunk({"role": "assistant", "content": ""})
                for piece in stream_answer(model, prompt, params):
                    yield chunk({"content": piece})
            # The slot is free before the client can read the end of the answer: a request sent right after it
            # is admitted (released after the last chunk, it raced the client's next request and got a 429).
            release()
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"
        finally:
            release()

    return app


def check_port_free(host: str, port: int) -> None:
    """Refuse, before a model loads, a port another program listens on (a second `serve`, an Argilla server)."""
    import socket

    from workbench.core.errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise InputError(f"{host}:{port} cannot be served on: {e.strerror}",
                             hint="another program listens there: pass --port with a free port") from None


def run_server(assistant, name: str, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None) -> None:
    """Serve the assistant (its model and catalog retriever) until interrupted."""
    import uvicorn

    uvicorn.run(create_app(assistant.model, name, assistant.retriever, limits), host=host, port=port,
                log_level="warning")

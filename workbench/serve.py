"""An OpenAI-compatible endpoint for a local model with an optional LoRA adapter (what `transformers serve` cannot
load): `/v1/models`, `/v1/completions` and `/v1/chat/completions` (streamed too). Chat requests become the
course-advisor prompt (`build_prompt`: the seed's system prompt unless the request brings its own, and with a
catalog, the best-matching page as context), so any OpenAI client talks to the finetuned assistant."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from workbench.core.models import GenerationParams, Model
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, ANSWER_STOPS, build_prompt


class CompletionRequest(BaseModel):
    model: str
    prompt: str | list[str]
    max_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int = 0


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


def create_app(model: Model, name: str, retriever=None):
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="Instruct Workbench assistant")
    lock = threading.Lock()  # one generation at a time: the model is not shared between threads

    @app.exception_handler(HTTPException)
    def openai_error(request: Request, error: HTTPException) -> JSONResponse:
        # OpenAI clients read the message from {"error": {"message": ...}}.
        return JSONResponse({"error": {"message": error.detail, "type": "invalid_request_error"}},
                            status_code=error.status_code)

    def check(requested: str) -> None:
        if requested != name:
            raise HTTPException(404, f"model {requested!r} is not served here; this server has {name!r}")

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
        with lock:
            done = model.complete(prompts, _params(request))
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": name, "usage": usage(done),
                "choices": [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                            for i, c in enumerate(done)]}

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):
        check(request.model)
        prompt = chat_prompt(model, request.messages, retriever)
        params = _params(request, ANSWER_STOPS)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if request.stream:
            return StreamingResponse(_stream(prompt, params, ident, created), media_type="text/event-stream")
        with lock:
            [done] = model.complete([prompt], params)
        return {"id": ident, "object": "chat.completion", "created": created, "model": name, "usage": usage([done]),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                             "finish_reason": done.finish_reason}]}

    def _stream(prompt: str, params: GenerationParams, ident: str, created: int):
        from workbench.assistant import stream_answer

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n"

        with lock:
            yield chunk({"role": "assistant", "content": ""})
            for piece in stream_answer(model, prompt, params):
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

    return app


def run_server(assistant, name: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the assistant (its model and catalog retriever) until interrupted."""
    import uvicorn

    uvicorn.run(create_app(assistant.model, name, assistant.retriever), host=host, port=port, log_level="warning")

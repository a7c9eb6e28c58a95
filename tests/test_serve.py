"""`workbench serve`: an OpenAI client talks to the tiny model with an adapter, streamed or not."""

import json
import os
import socket
import threading
import time

import httpx
import openai
import pytest

from workbench.assistant import Retriever
from workbench.core.catalog import CATALOG_DIR
from workbench.core.models import GenerationParams, get_model
from workbench.serve import Limits, create_app


def _serve(model, limits=None):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(model, "advisor", Retriever.from_catalog(CATALOG_DIR), limits)
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    for _ in range(100):
        if instance.started:
            break
        time.sleep(0.1)
    return instance, thread, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def server(tiny_generator):
    model = get_model(str(tiny_generator))
    instance, thread, url = _serve(model)
    yield model, openai.OpenAI(base_url=url, api_key="unused")
    instance.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def strict_server(tiny_generator):
    """A small --max-body and one request at a time, so the limits are easy to reach."""
    instance, thread, url = _serve(get_model(str(tiny_generator)), Limits(max_body=20_000, max_waiting=1))
    yield url
    instance.should_exit = True
    thread.join(10)


@pytest.mark.server
def test_models_and_completions(server):
    model, client = server
    assert [m.id for m in client.models.list().data] == ["advisor"]
    reply = client.completions.create(model="advisor", prompt=["The semester fee is", "Programming"], max_tokens=8)
    expected = model.generate(["The semester fee is", "Programming"], GenerationParams(max_new_tokens=8))
    assert [c.text for c in reply.choices] == expected and reply.usage.completion_tokens > 0
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    # n: that many choices per prompt, each prompt's together (sampled, so they may differ)
    three = client.completions.create(model="advisor", prompt=["The fee is", "Programming"], max_tokens=4, n=3,
                                      temperature=0.9)
    assert [c.index for c in three.choices] == list(range(6)) and all(c.finish_reason for c in three.choices)
    chat = client.chat.completions.create(model="advisor", messages=[{"role": "user", "content": "Fees?"}],
                                          max_tokens=4, n=2)
    assert len(chat.choices) == 2


@pytest.mark.server
def test_chat_is_the_grounded_advisor_prompt_streamed_or_not(server):
    from workbench.serve import Message, chat_prompt

    model, client = server
    question = "Do I have to know programming to apply for the business information systems course?"
    prompt = chat_prompt(model, [Message(role="user", content=question)], Retriever.from_catalog(CATALOG_DIR))
    assert prompt.startswith("You are an intelligent assistant") and "Programming Foundations for Business" in prompt
    reply = client.chat.completions.create(model="advisor", messages=[{"role": "user", "content": question}],
                                           max_tokens=24)
    answer = reply.choices[0].message.content
    assert answer == model.generate([prompt], GenerationParams(max_new_tokens=24, stop=("### End", "### Instruction:",
                                                                                         "\n\n\n")))[0]
    stream = client.chat.completions.create(model="advisor", messages=[{"role": "user", "content": question}],
                                            max_tokens=24, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == answer


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.server
def test_a_body_over_max_body_is_413_before_it_is_read(strict_server):
    big = json.dumps({"model": "advisor", "prompt": "fee " * 5_000_000, "max_tokens": 4}).encode()  # 20 MB
    before, started = _rss_bytes(), time.perf_counter()
    reply = httpx.post(f"{strict_server}/completions", content=big, headers={"content-type": "application/json"},
                       timeout=30)
    assert reply.status_code == 413 and "--max-body of 20,000 bytes" in reply.json()["error"]["message"]
    assert time.perf_counter() - started < 5 and _rss_bytes() - before < 100 * 2**20  # not read, not kept

    def chunks():  # no Content-Length: refused once the bytes pass the limit
        for _ in range(100):
            yield b"x" * 1000

    reply = httpx.post(f"{strict_server}/completions", content=chunks(), timeout=30)
    assert reply.status_code == 413, reply.text


@pytest.mark.server
def test_a_prompt_longer_than_the_context_is_400_naming_the_limit(strict_server):
    client = openai.OpenAI(base_url=strict_server, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="more than the model's context of 2,048 tokens"):
        client.completions.create(model="advisor", prompt="The semester fee is", max_tokens=4000)
    with pytest.raises(openai.BadRequestError, match=r"prompt is [\d,]+ tokens; with max_tokens 8"):
        client.chat.completions.create(model="advisor", messages=[{"role": "user", "content": "fees " * 3000}],
                                       max_tokens=8)
    assert client.completions.create(model="advisor", prompt="The semester fee is", max_tokens=4).choices


@pytest.mark.server
def test_requests_beyond_max_waiting_are_429_and_the_slot_comes_back(strict_server):
    client = openai.OpenAI(base_url=strict_server, api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "What does the nursing programme cost?"}]
    stream = client.chat.completions.create(model="advisor", messages=question, max_tokens=16, stream=True)
    next(iter(stream))  # the one slot is taken while this answer streams
    reply = httpx.post(f"{strict_server}/completions", json={"model": "advisor", "prompt": "x", "max_tokens": 2})
    assert reply.status_code == 429 and reply.headers["retry-after"] == "1"
    assert "--max-waiting" in reply.json()["error"]["message"]
    for _ in stream:
        pass
    assert client.completions.create(model="advisor", prompt="The semester fee is", max_tokens=4).choices
    for _ in range(10):  # the slot is free once the answer is: the request right after an answer never races it
        for _ in client.chat.completions.create(model="advisor", messages=question, max_tokens=4, stream=True):
            pass
        assert client.completions.create(model="advisor", prompt="The fee is", max_tokens=2).choices


def test_serve_on_a_busy_port_says_so_before_loading_and_never_announces_itself(tmp_path, invoke):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", "--model", tmp_path / "no-such-model", "--port", port)
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} cannot be served on" in result.output and "--port" in result.output
    assert "Serving" not in result.output and "no-such-model" not in result.output  # refused before any loading

"""`workbench serve`: an OpenAI client talks to the tiny model with an adapter, streamed or not."""

import socket
import threading
import time

import openai
import pytest

from workbench.assistant import Retriever
from workbench.core.catalog import CATALOG_DIR
from workbench.core.models import GenerationParams, get_model
from workbench.serve import create_app


@pytest.fixture(scope="module")
def server(tiny_generator):
    import uvicorn

    model = get_model(str(tiny_generator))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(model, "advisor", Retriever.from_catalog(CATALOG_DIR))
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    for _ in range(100):
        if instance.started:
            break
        time.sleep(0.1)
    yield model, openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
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

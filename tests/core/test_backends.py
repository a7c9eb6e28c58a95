"""The openai backend against a real OpenAI-compatible server: `transformers serve` with the tiny model."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipelines.bootstrap import PAPER_SAMPLING, BootstrapConfig, run
from workbench.core.backends import BackendConfig, BackendError, OpenAIModel, load_backend
from workbench.core.catalog import SEED_TASKS
from workbench.core.errors import ConfigError
from workbench.core.io import load_records
from workbench.core.models import GenerationParams
from workbench.core.runs import Outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_generator, tmp_path_factory):
    """`transformers serve` on loopback with the tiny generator preloaded; stopped at the end."""
    from transformers import AutoTokenizer

    # A copy with a chat template, so that the chat endpoint has something to render messages with.
    model_dir = tmp_path_factory.mktemp("served") / "generator"
    shutil.copytree(tiny_generator, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = ("{% for m in messages %}### Instruction:\n{{ m['content'] }}\n\n{% endfor %}"
                               "### Response:\n")
    tokenizer.save_pretrained(model_dir)
    port = free_port()
    cli = Path(sys.executable).parent / "transformers"
    command = [str(cli) if cli.exists() else shutil.which("transformers"), "serve", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("transformers serve did not come up in 90 s")
    yield f"{base}/v1", str(model_dir)
    process.terminate()
    process.wait(timeout=20)


@pytest.mark.server
def test_completions_keep_order_and_count_tokens(served):
    base, name = served
    model = OpenAIModel(name, base, concurrency=3)
    prompts = ["Come up with a series of tasks:\n1. What is ECTS?\n2.", "The semester fee is", "Nursing"]
    completions = model.complete(prompts, GenerationParams(max_new_tokens=12))
    assert len(completions) == 3 and all(c.completion_tokens > 0 for c in completions)
    assert model.usage["requests"] == 3 and model.usage["prompt_tokens"] > 0
    # Greedy decoding: the same prompt alone gives the same text, so the order was kept.
    assert model.complete([prompts[1]], GenerationParams(max_new_tokens=12))[0].text == completions[1].text


@pytest.mark.server
def test_chat_endpoint(served):
    """The chat endpoint renders the message with the model's chat template: its greedy answer is the one the same
    model gives through the transformers backend for the rendered prompt, not the one for the bare question."""
    from workbench.core.models import get_model

    base, name = served
    question = "What does the Nursing BSc cost?"
    params = GenerationParams(max_new_tokens=8)
    [completion] = OpenAIModel(name, base, api="chat").complete([question], params)
    local = get_model(name)
    rendered = local.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                   add_generation_prompt=True)
    assert rendered == f"### Instruction:\n{question}\n\n### Response:"  # (Jinja drops the template's last newline)
    [templated, bare] = local.generate([rendered, question], params)
    assert templated != bare  # so the comparison below tells whether the template was applied
    assert completion.text == templated and completion.completion_tokens > 0


@pytest.mark.server
def test_bootstrap_through_the_openai_backend(served, tmp_path):
    base, name = served
    backend = load_backend(BackendConfig(backend="openai", model=name, api_base=base))
    config = BootstrapConfig(num=10, rounds=1, prompts_per_round=3,
                             sampling=PAPER_SAMPLING.model_copy(update={"max_new_tokens": 120}))
    result = run(backend, SEED_TASKS, config, Outputs.beside(tmp_path / "o.jsonl", "instructions"))
    records = load_records(tmp_path / "o.jsonl", []) + load_records(tmp_path / "o.rejected.jsonl", [])
    assert records and all(r.lineage[0]["detail"]["backend"] == "openai" for r in records)
    assert result.counts["completion_tokens"] > 0  # as the API reported them


def test_unreachable_server_is_a_one_line_error_without_the_key():
    model = OpenAIModel("m", f"http://127.0.0.1:{free_port()}/v1", api_key="sk-secret-123", max_retries=0,
                        timeout=2)
    with pytest.raises(BackendError) as info:
        model.complete(["hi"])
    assert "sk-secret-123" not in str(info.value) and "\n" not in str(info.value)


def test_openai_backend_needs_an_address(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="needs a server address"):
        OpenAIModel("m")

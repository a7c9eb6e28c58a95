"""The trained assistant: `workbench ask`, `chat`, `serve`, and `inspect next-token` to see inside a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench import display
from workbench.cli.base import AdapterOption, ModelName, Port, QuantOption, group, opt
from workbench.cli.options import BACKEND
from workbench.core.config import options
from workbench.display import console, err_console

inspect_app = group("See inside a model: next-token probabilities.")
GROUPS = {"inspect": inspect_app}

Catalog = Annotated[Path | None, opt("A folder of pages (Markdown, text, HTML, PDF): the best-matching page is given "
                                     "as context (BM25), so answers are grounded.")]
SystemPrompt = Annotated[bool, opt("The course-advisor system prompt.")]
AnswerTokens = Annotated[int, typer.Option(help="Tokens generated at most per answer.", min=1, max=4096)]


@inspect_app.command("next-token")
def inspect_next_token(
    prompt: Annotated[str, typer.Argument(help="The text the model continues.")], model: ModelName,
    adapter: AdapterOption = None, top_k: Annotated[int, opt("How many of the most likely tokens to show.")] = 10,
    steps: Annotated[int, opt("Append the most likely token and show the next step, N times.")] = 1,
    compare: Annotated[str | None, opt("A second model, side by side (it sees the same text).")] = None,
    compare_adapter: Annotated[str | None, opt("LoRA adapter for --compare.")] = None,
):
    """The next-token distribution (token, probability), step by step, for one model or two side by side.

    Example: workbench inspect next-token --model tiiuae/falcon-7b "Addressing climate change requires" --steps 3
    --compare tiiuae/falcon-7b-instruct"""
    from workbench.core.models import get_model
    from workbench.core.next_token import next_tokens

    pairs = [(model, adapter)] + ([(compare, compare_adapter)] if compare else [])
    found = next_tokens([get_model(name, adapter=extra) for name, extra in pairs], prompt, top_k, steps)
    for table in display.next_token_tables(found, [Path(extra or name).name for name, extra in pairs]):
        console.print(table)


def ask(question: Annotated[str, typer.Argument(help="A prospective student's question.")], model: ModelName,
        adapter: AdapterOption = None, catalog: Catalog = None, system_prompt: SystemPrompt = True,
        quant: QuantOption = BACKEND.quant, max_new_tokens: AnswerTokens = 128):
    """Answer one question as the course-advisor assistant, streaming the answer.

    Example: workbench ask --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog
    "Do I have to know programming to apply for the business information systems course?\""""
    from workbench.assistant import load_assistant

    assistant = load_assistant(model, adapter, catalog, quant, system_prompt)
    display.answer(assistant, question, None, max_new_tokens)


def chat(model: ModelName, adapter: AdapterOption = None, catalog: Catalog = None, system_prompt: SystemPrompt = True,
         quant: QuantOption = BACKEND.quant, max_new_tokens: AnswerTokens = 128):
    """Talk to the course-advisor assistant: one question per line; `exit` or Ctrl-D ends.

    Example: workbench chat --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog"""
    from workbench.assistant import load_assistant

    assistant, page = load_assistant(model, adapter, catalog, quant, system_prompt), None
    for question in display.questions():
        page = display.answer(assistant, question, page, max_new_tokens, prefix="[bold]advisor>[/] ")


def serve_command(
    model: ModelName, adapter: AdapterOption = None, catalog: Catalog = None, quant: QuantOption = BACKEND.quant,
    name: Annotated[str | None, opt("The model name clients ask for (default: the adapter's or model's folder "
                                    "name).")] = None,
    host: Annotated[str, opt("Address to listen on; loopback by default.")] = "127.0.0.1",
    port: Port = 8000,
    max_body: Annotated[int, opt("Largest request body in bytes; larger ones get HTTP 413.")] = 1_000_000,
    max_waiting: Annotated[int, typer.Option(help="Requests answered or queued at once; more get HTTP 429 with "
                                             "Retry-After (which the workbench's own client waits out).", min=1)
                           ] = 16,
):
    """Serve the assistant on an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions).

    Example: workbench serve --model tiiuae/falcon-7b --adapter adapters/advisor --catalog workbench/data/catalog"""
    from workbench.assistant import load_assistant
    from workbench.serve import Limits, check_port_free, run_server

    limits = options(Limits, max_body=max_body, max_waiting=max_waiting)
    label = name or Path(adapter or model).name
    check_port_free(host, port)  # before the model loads, and before anything says "Serving"
    assistant = load_assistant(model, adapter, catalog, quant)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"Warning: listening on {host}: anyone who can reach it can use the model (no key)")
    err_console.print(f"Serving {label!r} at http://{host}:{port}/v1 (OPENAI_BASE_URL); Ctrl-C stops")
    run_server(assistant, label, host, port, limits)


def register(app) -> None:
    for name, command in (("ask", ask), ("chat", chat), ("serve", serve_command)):
        app.command(name)(command)

"""`workbench models ...`: build tiny models, check model loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench import api
from workbench.cli.base import QuantOption, group, opt
from workbench.cli.options import BACKEND
from workbench.core.models import GenerationParams, get_model
from workbench.core.tiny import TinySpec
from workbench.display import console, progress_bar

models_app = group("Build tiny models and check model loading.")
GROUPS = {"models": models_app}
TINY = TinySpec()


@models_app.command("tiny")
def models_tiny(
    out: Annotated[Path, typer.Argument(help="Folder to save the model and tokenizer in.")],
    arch: Annotated[str, opt("falcon (like falcon-7b) or llama.")] = TINY.arch,
    layers: Annotated[int, typer.Option(min=1)] = TINY.layers,
    hidden: Annotated[int, typer.Option(help="Width (a multiple of --heads).", min=8)] = TINY.hidden,
    heads: Annotated[int, typer.Option(min=1)] = TINY.heads, seed: int = TINY.seed,
    vocab: Annotated[int, typer.Option(help="BPE vocabulary size (smaller if the corpus runs out).", min=300)
                     ] = TINY.vocab,
    corpus: Annotated[list[Path] | None, opt("Text for the tokenizer (repeat the flag); default: the bundled "
                                             "catalog and seeds.")] = None,
    train_steps: Annotated[int, typer.Option(help="Then train it from scratch for this many steps on the corpus "
                                             "(default corpus: the bundled data in the shapes the loop asks for).",
                                             min=0)] = 0,
):
    """Build a tiny model of a real architecture with a BPE tokenizer trained on the corpus.

    Example: workbench models tiny tiny-falcon --arch falcon --layers 2 --hidden 128 --train-steps 300"""
    with progress_bar("training steps") as step:
        made = api.build_tiny_model(out, arch=arch, layers=layers, hidden=hidden, heads=heads, vocab=vocab, seed=seed,
                                    corpus=corpus, train_steps=train_steps,
                                    progress=lambda done, total, loss: step(done, total))
    console.print(f"Built a {arch} model with {made['parameters']:,} parameters in {out} ({made['seconds']:.1f} s)")
    if train_steps:
        console.print(f"Trained {train_steps} steps: loss {made['losses'][0]:.2f} -> {made['losses'][-1]:.2f}")


@models_app.command("check")
def models_check(model: Annotated[str, typer.Argument(help="A hub id or local folder.")],
                 quant: QuantOption = BACKEND.quant,
                 dtype: Annotated[str, opt("auto, float32, bfloat16 or float16.")] = "auto",
                 device: Annotated[str, opt("auto, cpu or cuda.")] = BACKEND.device,
                 prompt: Annotated[str | None, opt("Also generate from this prompt.")] = None):
    """Load a model the way every stage does and report what was really loaded (8-bit verified).

    Example: workbench models check tiiuae/falcon-7b --quant 8bit"""
    loaded = get_model(model, quant=quant, dtype=dtype, device=device)
    console.print(f"{model}: {type(loaded.model).__name__}, {loaded.parameters:,} parameters on {loaded.device}, "
                  f"dtype {loaded.model.dtype}, quantization {quant} ({loaded.quantized_layers} layers)")
    if prompt:
        console.print(prompt + loaded.generate([prompt], GenerationParams(max_new_tokens=32))[0], markup=False)

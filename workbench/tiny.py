"""Tiny models of the real architectures, built in well under a second, for tests and the offline demo.

No model hub is reachable here, so everything that loads falcon-7b is exercised on a model of the same
architecture (Falcon: multi-query attention, parallel attention, no bias) with a byte-level BPE tokenizer
trained on the bundled domain text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from workbench.errors import InputError
from workbench.io import atomic_write_text

EOS = "<|endoftext|>"  # falcon-7b's end-of-text token
PAD = "<|pad|>"  # separate from EOS so that masking padding never masks the trained end-of-answer token


@dataclass(frozen=True)
class TinySpec:
    arch: Literal["falcon", "llama"] = "falcon"  # falcon: like falcon-7b; llama: a second architecture for tests
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    vocab: int = 2000  # BPE merges stop earlier when the corpus is small
    max_positions: int = 2048
    seed: int = 0


def default_corpus() -> list[Path]:
    """The bundled catalog and seed tasks."""
    from workbench.catalog import CATALOG_DIR, SEED_TASKS

    return [*sorted(CATALOG_DIR.glob("*.md")), SEED_TASKS]


def corpus_texts(files: Iterable[Path]) -> list[str]:
    texts = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise InputError(f"{path}: corpus file not found")
        texts.extend(line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    if not texts:
        raise InputError("the tokenizer corpus is empty")
    return texts


def train_tokenizer(texts: list[str], vocab: int, max_length: int):
    """A byte-level BPE (as Falcon's) trained on `texts`, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD,
                                   model_max_length=max_length)


def model_config(spec: TinySpec, vocab_size: int, eos_id: int, pad_id: int):
    ids = {"vocab_size": vocab_size, "bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}
    if spec.arch == "falcon":
        from transformers import FalconConfig

        # falcon-7b's layout: one shared key/value head, attention and MLP in parallel, no biases, rotary.
        return FalconConfig(hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                            num_attention_heads=spec.heads, multi_query=True, parallel_attn=True, bias=False,
                            new_decoder_architecture=False, alibi=False,
                            max_position_embeddings=spec.max_positions, **ids)
    if spec.arch == "llama":
        from transformers import LlamaConfig

        # Llama's MLP is ~8/3 of the width, rounded up to a multiple of 64 (bitsandbytes' CPU 4-bit
        # kernel packs weights in blocks of 32 rows and quantizes inputs in blocks of 64).
        return LlamaConfig(hidden_size=spec.hidden, intermediate_size=-(-spec.hidden * 8 // 3 // 64) * 64,
                           num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                           num_key_value_heads=max(1, spec.heads // 2), tie_word_embeddings=False,
                           max_position_embeddings=spec.max_positions, **ids)
    raise InputError(f"unknown architecture {spec.arch!r}; choose falcon or llama")


def build_tiny_model(out: str | Path, spec: TinySpec | None = None, corpus: Iterable[Path] | None = None) -> Path:
    """Train the tokenizer, initialise the model from `spec.seed`, save both to OUT; returns OUT."""
    spec = spec or TinySpec()
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if spec.hidden % spec.heads:
        raise InputError(f"--hidden {spec.hidden} must be divisible by --heads {spec.heads}")
    files = list(corpus) if corpus is not None else default_corpus()
    tokenizer = train_tokenizer(corpus_texts(files), spec.vocab, spec.max_positions)
    eos_id, pad_id = tokenizer.convert_tokens_to_ids([EOS, PAD])
    config = model_config(spec, len(tokenizer), eos_id, pad_id)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    made = {"spec": asdict(spec), "corpus": [str(f) for f in files],
            "parameters": sum(p.numel() for p in model.parameters())}
    atomic_write_text(out / "tiny.json", json.dumps(made, indent=2) + "\n")
    return out

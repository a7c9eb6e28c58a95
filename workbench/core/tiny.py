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

from workbench.core.errors import InputError
from workbench.core.io import atomic_write_text

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
    from workbench.core.catalog import CATALOG_DIR, SEED_TASKS

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


def pretrain_tiny(model_dir: str | Path, texts: list[str], steps: int = 300, seq_len: int = 128,
                  batch_size: int = 16, lr: float = 3e-3, seed: int = 0, progress=None,
                  aligned: bool = False, checkpoint: str | Path | None = None,
                  checkpoint_every: int = 50) -> list[float]:
    """Train the tiny model in MODEL_DIR on `texts` (next-token loss) and save it in place; returns losses.

    Sequences are windows of the concatenated texts, at random offsets, or (`aligned`) starting where a text
    starts, so that a whole page with its question is seen at the positions a prompt puts them.
    A plain loop, not Trainer: a few hundred steps on one CPU, nothing to shard or evaluate.
    `checkpoint`: a file where the loop's whole state (weights, optimizer, schedule, batch sampler, losses) is kept
    every `checkpoint_every` steps and at the end, so that a run killed midway goes on from there to the same weights
    as one never stopped; a checkpoint of other texts or settings is ignored.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids, starts_at = [], []
    for text in texts:
        starts_at.append(len(ids))
        ids += [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    stream = torch.tensor(ids)
    if len(stream) <= seq_len + 1:
        raise InputError(f"the training text has {len(stream)} tokens, fewer than one sequence of {seq_len}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = 0
    if checkpoint is not None:
        import hashlib
        import json

        checkpoint = Path(checkpoint)
        settings = json.dumps([steps, seq_len, batch_size, lr, seed, aligned, texts]).encode()
        key = hashlib.sha256(settings).hexdigest()
        state = torch.load(checkpoint, weights_only=False) if checkpoint.is_file() else None
        if state is not None and state["key"] == key:  # where the killed run stopped
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            generator.set_state(state["generator"])
            losses, start = state["losses"], state["step"]

    def keep(step: int) -> None:
        state = {"key": key, "step": step, "losses": losses, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "generator": generator.get_state()}
        partial = checkpoint.with_name(checkpoint.name + ".partial")
        torch.save(state, partial)
        partial.replace(checkpoint)  # whole or not at all: a kill during the save leaves the last one

    model.train()
    for step in range(start, steps):
        if aligned:
            picks = torch.randint(0, len(starts_at), (batch_size,), generator=generator).tolist()
            starts = [min(starts_at[i], len(stream) - seq_len - 1) for i in picks]
        else:
            starts = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator).tolist()
        batch = torch.stack([stream[s:s + seq_len] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            keep(step + 1)
        if progress:
            progress(step + 1, steps, losses[-1])
    model.eval()
    model.save_pretrained(model_dir)
    return losses


DETOXIFY_ORIGINAL_CLASSES = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def build_tiny_detoxify(out: str | Path, classes: tuple[str, ...] = DETOXIFY_ORIGINAL_CLASSES, hidden: int = 32,
                        layers: int = 2, heads: int = 2, intermediate: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """A detoxify-format checkpoint (random weights) and its transformers folder; returns (checkpoint, folder).

    detoxify reads `config.arch.args` and `config.dataset.args.classes` from the checkpoint and always calls
    `from_pretrained(model_type)`, so model_type names the local folder, whose config declares as many labels
    as the checkpoint. bert-base sizes: hidden 768, layers 12, heads 12, intermediate 3072.
    """
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(corpus_texts(default_corpus()), vocab_size=2000, show_progress=False)
    wordpiece.save_model(str(out))
    tokenizer = BertTokenizer(str(out / "vocab.txt"), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(out)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, num_labels=len(classes),
                        max_position_embeddings=512)
    config.save_pretrained(out)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    checkpoint = {"config": {"arch": {"args": {"model_type": str(out), "model_name": "BertForSequenceClassification",
                                               "tokenizer_name": "BertTokenizer", "num_classes": len(classes)}},
                             "dataset": {"args": {"classes": list(classes)}}},
                  "state_dict": model.state_dict()}
    torch.save(checkpoint, out / "checkpoint.ckpt")
    return out / "checkpoint.ckpt", out

"""Tiny models of the real architectures, built in well under a second, for tests and the offline demo.

No model hub is reachable here, so everything that loads falcon-7b is exercised on a model of the same
architecture (Falcon: multi-query attention, parallel attention, no bias) with a byte-level BPE tokenizer
trained on the bundled domain text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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


def domain_texts(listings: int = 300, seed: int = 0, questions=None, doc_questions: int = 4,
                 doc_listings: int = 4, more_tasks: Sequence[str] = ()) -> list[str]:
    """Text that teaches a tiny model the shapes the loop asks for: catalog pages, answers in the prompt
    format, Self-Instruct task listings and document questions, all from the bundled data. `questions(programme)`
    gives the document questions and answers (default `programme_questions`; the demo's instruct model reads
    `catalog_questions`). A listing shows eight seed tasks and goes on with four more (from `more_tasks` too, if given):
    a model that only ever saw seed tasks continue a listing repeats them, and Self-Instruct drops repeats."""
    import random

    from workbench.core.catalog import SEED_TASKS, load_catalog
    from workbench.core.io import load_records
    from workbench.core.prompts import (
        bootstrap_prompt,
        category_prompt,
        doc_questions_prompt,
        format_example,
        instance_prompt,
        is_classification_prompt,
    )
    from workbench.core.records import Record

    rng = random.Random(seed)
    seeds = load_records(SEED_TASKS, [])
    programmes = load_catalog()
    texts = [p.text for p in programmes] + [format_example(r) for r in seeds]
    instructions = [r.instruction for r in seeds]
    for _ in range(listings):
        shown = rng.sample(instructions, 12)
        following = rng.sample([*shown[8:], *more_tasks], 4) if more_tasks else shown[8:]
        texts.append(bootstrap_prompt(shown[:8]) + " " + "\n".join(
            f"{i}. {text}" for i, text in enumerate(following, start=9))[3:])
    for seed_task in seeds:  # the follow-up prompts: category, classification or not, instances
        shots = rng.sample([r for r in seeds if r is not seed_task], 6)
        texts.append(f"{category_prompt(seed_task.instruction, shots)} {seed_task.category}")
        flag = "Yes" if seed_task.meta.get("is_classification") else "No"
        texts.append(f"{is_classification_prompt(seed_task.instruction, shots)} {flag}")
        clf = bool(seed_task.meta.get("is_classification"))
        same_kind = [r for r in seeds if bool(r.meta.get("is_classification")) == clf and r is not seed_task]
        prompt = instance_prompt(seed_task.instruction, rng.sample(same_kind, 2), output_first=clf)
        if clf:
            answer = f" {seed_task.response}\n{'Input: ' + seed_task.context if seed_task.context else ''}"
        else:
            given = f"Input: {seed_task.context}\n" if seed_task.context else ""
            answer = f"{given}Output: {seed_task.response}"
        texts.append(prompt + answer)
    for programme in programmes:
        pairs = (questions or programme_questions)(programme)
        for _ in range(doc_listings):
            asked = rng.sample(pairs, min(doc_questions, len(pairs)))
            texts.append(doc_questions_prompt(programme.text, len(asked)) + " " + "\n".join(
                f"{i}. {q}" for i, (q, _) in enumerate(asked, start=1))[3:])
        texts += [format_example(Record(q, programme.text, a)) for q, a in pairs]
    return texts


def programme_questions(programme) -> list[tuple[str, str]]:
    """Questions about a programme with answers read off its catalog header."""
    h, name = programme.header, f"the {programme.title} {programme.degree}"
    programming = "is not required" if not h["programming_required"] else "is required"
    return [
        (f"How long does {name} take?", f"{name[0].upper()}{name[1:]} takes {h['duration']}."),
        (f"In which language is {name} taught?", f"It is taught in {h['language']}."),
        (f"When does {name} start?", f"It starts in {' and '.join(h['start_dates'])}."),
        (f"Do I need programming knowledge for {name}?", f"Programming knowledge {programming} for {name}."),
        (f"What does {name} cost per semester?",
         f"The semester fee is {h['fees']['home_per_semester']} for home and EU students and "
         f"{h['fees']['international_per_semester']} for international students."),
        (f"Where is {name} taught?", f"On the {h.get('campus', 'main campus')}."),
    ]


def catalog_questions(programme) -> list[tuple[str, str]]:
    """Questions a prospective student asks about a programme, answered from its page (about 25 per page).

    Read off the page's structure, the same for every catalog page: the "Key facts" bullets, the admission
    requirement bullets, the module strands, the first sentence of the intro and of the career section, and the
    funding sentence. This is what the demo's tiny models are taught to read (the stand-in for what a large model
    learned from the web); the eval suites' questions are written separately and checked against it.
    """
    import re

    title, name = programme.title, f"the {programme.title} {programme.degree}"
    sections = {}
    intro, *blocks = re.split(r"\n(?=## )", programme.text)
    for block in blocks:
        head, _, body = block.partition("\n")
        sections[head.lstrip("# ").strip()] = body.strip()

    def bullets(section: str) -> list[str]:
        return [" ".join(b.split()) for b in re.split(r"\n- ", "\n" + sections.get(section, "")) if b.strip()]

    def sentences(text: str) -> list[str]:
        return [x for x in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if x]

    pairs = []
    for fact in bullets("Key facts"):
        label, _, value = (x.strip() for x in fact.partition(":"))
        label = label.lower()
        if label == "degree":
            pairs += [(f"Which degree does {name} lead to?", value),
                      (f"How many ECTS credits is {title} worth?", value.split(", ")[-1])]
        elif label == "duration":
            pairs += [(f"How long is {name}?", value), (f"How many semesters does {title} take?", value)]
        elif label.startswith("language"):
            english = value.lower().startswith("english")
            pairs += [(f"In which language is {title} taught?", value),
                      (f"Is {name} taught in English?",
                       "Yes, it is taught in English." if english else f"No, it is taught in {value}.")]
        elif label == "campus":
            pairs += [(f"On which campus is {name}?", value), (f"Where will I study {title}?", f"On the {value}.")]
        elif label == "start":
            pairs.append((f"When does {name} start?", value))
            for month in ("October", "March"):
                article = "an" if month[0] in "AEIOU" else "a"
                pairs.append((f"Is there {article} {month} intake for {name}?", f"Yes, there are intakes in {value}."
                              if month in value else f"No, the only intake is in {value}."))
        elif label.startswith("application deadline"):
            pairs += [(f"What is the application deadline for {name}?", value),
                      (f"When must I apply for {title}?", value)]
        elif label.startswith("semester fee"):
            pairs += [(f"What is the semester fee for {name}?", value),
                      (f"How much does {title} cost per semester?", value)]
    for requirement in bullets("Admission requirements"):
        low, first = requirement.lower(), sentences(requirement.replace("*", ""))[0].rstrip(".")
        if "programming knowledge is not required" in low:
            pairs += [(f"Do I need programming knowledge for {title}?", "No, programming knowledge is not required."),
                      (f"Can I apply to {title} without programming experience?",
                       "Yes, programming knowledge is not required.")]
        elif "programming knowledge is required" in low:
            detail = requirement.replace("*", "").split(":", 1)[-1].strip()
            pairs.append((f"Do I need programming knowledge for {title}?", f"Yes, {sentences(detail)[0]}"))
        elif low.startswith(("english", "german")):
            pairs.append((f"Which {requirement.split()[0]} level does {title} ask for?", first))
        elif any(word in low for word in ("degree", "certificate", "school")):
            pairs.append((f"Which qualification does {name} ask for?", first))
        else:
            pairs.append((f"What else does an application to {title} need?", first))
    for strand in bullets("Module strands"):
        labelled = re.match(r"\*\*(.+?):?\*\*:?\s*(.+)", strand)
        if labelled:
            pairs.append((f"Which {labelled.group(1).rstrip(':').lower()} modules does {title} have?",
                          labelled.group(2)))
    body = "\n".join(line for line in intro.splitlines() if not line.startswith("#"))
    for question, text, index in ((f"What is {name} about?", body, 0),
                                  (f"Where do graduates of {title} work?", sections.get("Career prospects", ""), 0),
                                  (f"Is there any funding for {title}?", sections.get("Fees and funding", ""), 1)):
        found = sentences(text)
        if len(found) > index:
            pairs.append((question, found[index]))
    first: dict[str, str] = {}
    for question, answer in pairs:
        first.setdefault(question, answer)  # a question asked twice (two such bullets) keeps its first answer
    return list(first.items())


def base_texts(repeats: int = 3) -> list[str]:
    """Plain text for the tiny *base* model (the stand-in for falcon-7b): catalog pages, the seed tasks as prose
    and reading-comprehension passages (a question, the page, the answer), and none of the prompt formats, so
    that it knows the domain but not the instruction format the finetuned adapter learns."""
    from workbench.core.catalog import SEED_TASKS, load_catalog
    from workbench.core.io import load_records

    programmes = load_catalog()
    texts = [p.text for p in programmes] * repeats
    texts += [" ".join(part for part in (r.instruction, r.context, r.response) if part)
              for r in load_records(SEED_TASKS, [])]
    texts += [f"Question: {q}\n\n{p.text}\n\nAnswer: {a}" for p in programmes for q, a in catalog_questions(p)]
    return texts


def pretrain_tiny(model_dir: str | Path, texts: list[str], steps: int = 300, seq_len: int = 128,
                  batch_size: int = 16, lr: float = 3e-3, seed: int = 0, progress=None,
                  aligned: bool = False) -> list[float]:
    """Train the tiny model in MODEL_DIR on `texts` (next-token loss) and save it in place; returns losses.

    Sequences are windows of the concatenated texts, at random offsets, or (`aligned`) starting where a text
    starts, so that a whole page with its question is seen at the positions a prompt puts them.
    A plain loop, not Trainer: a few hundred steps on one CPU, nothing to shard or evaluate.
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
    losses = []
    model.train()
    for step in range(steps):
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

"""The tiny models' teaching text, and the demo's pair of tiny models that stand in for falcon-7b and
falcon-7b-instruct (the recipe's tiny-model stage).

A tiny model reads little, so what it reads is chosen: the *base* reads plain text only (catalog pages, seed tasks
as prose, reading passages: a question, the page, the answer) and never a prompt format; the *instruct* model is
the base trained further on the prompt formats the generator is asked (Self-Instruct listings, document questions,
answers in the Dolly sections), as falcon-7b-instruct is falcon-7b trained further.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.catalog import load_catalog
from workbench.core.io import atomic_write_json
from workbench.core.runs import Outputs, StepResult
from workbench.core.tiny import TinySpec, build_tiny_model, corpus_texts, default_corpus, pretrain_tiny


def domain_texts(listings: int = 300, seed: int = 0, questions=None, doc_questions: int = 4,
                 doc_listings: int = 4, more_tasks: Sequence[str] = (), programmes=None,
                 seed_file: Path | None = None) -> list[str]:
    """Text that teaches a tiny model the shapes the loop asks for: catalog pages, answers in the prompt
    format, Self-Instruct task listings and document questions, all from the bundled data. `questions(programme)`
    gives the document questions and answers (default `programme_questions`; the demo's instruct model reads
    `catalog_questions`). A listing shows eight seed tasks and goes on with four more (from `more_tasks` too, if given):
    a model that only ever saw seed tasks continue a listing repeats them, and Self-Instruct drops repeats.
    `programmes`: the pages to read (default: the bundled catalog; a recipe's own pages, `workbench.core.pages`);
    `seed_file`: the seed tasks (default: the bundled ones)."""
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
    seeds = load_records(seed_file or SEED_TASKS, [])
    programmes = load_catalog() if programmes is None else programmes
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
        if not pairs:
            continue  # a page with nothing to ask about (no facts, no sections)
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


def base_texts(repeats: int = 3, programmes=None, questions=None, seed_file: Path | None = None) -> list[str]:
    """Plain text for the tiny *base* model (the stand-in for falcon-7b): catalog pages, the seed tasks as prose
    and reading-comprehension passages (a question, the page, the answer), and none of the prompt formats, so
    that it knows the domain but not the instruction format the finetuned adapter learns. `programmes` and
    `questions`: a recipe's own pages and `page_questions` (default: the bundled catalog and `catalog_questions`)."""
    from workbench.core.catalog import SEED_TASKS, load_catalog
    from workbench.core.io import load_records

    programmes = load_catalog() if programmes is None else programmes
    questions = questions or catalog_questions
    texts = [p.text for p in programmes] * repeats
    texts += [" ".join(part for part in (r.instruction, r.context, r.response) if part)
              for r in load_records(seed_file or SEED_TASKS, [])]
    texts += [f"Question: {q}\n\n{p.text}\n\nAnswer: {a}" for p in programmes for q, a in questions(p)]
    return texts


# What a question about any page asks, by what a sentence or a "Label: value" line of the page is about: a tiny
# model that reads the user's own pages learns to answer from the page (the bundled catalog has its own, richer
# reading lesson in `catalog_questions`, which knows the catalog's layout).
_TOPICS = (
    (("fee", "eur", "€", "tuition", "cost", "price", "contribution"), "How much does {name} cost?"),
    (("programming", "python", "coding"), "Do I need programming knowledge for {name}?"),
    (("taught in", "language", "english", "german", "french", "spanish"), "In which language is {name} taught?"),
    (("deadline", "apply", "application"), "When must I apply for {name}?"),
    (("start", "intake", "begins"), "When does {name} start?"),
    (("duration", "lasts", "takes", "full time", "part time"), "How long is {name}?"),
    (("campus", "located", "city"), "Where is {name} taught?"),
    (("graduates", "career", "work in", "jobs"), "Where do graduates of {name} work?"),
    (("requirement", "applicants need", "admission", "certificate"), "What do I need to apply to {name}?"),
)


def page_blocks(text: str) -> list[str]:
    """A page's blocks as a reader sees them: each bullet, each paragraph (lines wrapped by a PDF or an editor joined),
    each heading; blank lines and bullets separate them."""
    import re

    blocks: list[str] = []
    joined = False
    for line in text.splitlines():
        line = line.strip()
        bullet = re.match(r"^([-*•]|\d+[.)])\s+", line)
        if not line:
            joined = False
        elif bullet or line.startswith("#"):
            blocks.append(line[bullet.end():] if bullet else line)
            joined = bool(bullet)  # a wrapped bullet goes on on the next line
        elif joined:
            blocks[-1] += " " + line
        else:
            blocks.append(line)
            joined = True
    return [" ".join(b.split()) for b in blocks]


def page_questions(page) -> list[tuple[str, str]]:
    """Questions a prospective student asks of any page, each answered by the first "Label: value" block or sentence
    of the page that is about it, plus what the page is about (its first sentence). Headings (a '#' line, or a short
    line without a full stop, as a PDF's title) are not answers."""
    import re

    name = page.name
    blocks = [b for b in page_blocks(page.text) if not b.startswith("#")
              and not (len(b.split()) <= 8 and not b.endswith((".", "!", "?", ":")) and ":" not in b)]
    facts = [b for b in blocks if re.match(r"^[A-Z][^:]{1,40}:\s+\S", b)]
    sentences = [x for b in blocks if b not in facts for x in re.split(r"(?<=[.!?])\s+", b) if len(x.split()) >= 4]
    pairs: dict[str, str] = {}
    if sentences:
        pairs[f"What is {name} about?"] = sentences[0]
    for keys, question in _TOPICS:
        for text in (*facts, *sentences):
            if any(k in text.lower() for k in keys):
                pairs.setdefault(question.format(name=name), text if text.endswith((".", "!", "?")) else text + ".")
                break
    return list(pairs.items())


def without(questions, held_out=None):
    """`questions(page)` without the questions `held_out(question)` is true of (an eval suite's): what the tiny pair
    is taught of a page."""
    if held_out is None:
        return questions
    return lambda page: [(q, a) for q, a in questions(page) if not held_out(q)]


def build_and_train(out: Path, spec: TinySpec, corpus: list[Path] | None = None, train_steps: int = 0,
                    progress=None) -> dict:
    """`workbench models tiny`: a tiny model built in OUT and, with `train_steps`, trained from scratch on the
    corpus (default: the bundled data in the shapes the loop asks for). Returns parameters, seconds, losses."""
    clock = time.perf_counter()
    path = build_tiny_model(out, spec, corpus)
    made = {"parameters": json.loads((path / "tiny.json").read_text())["parameters"],
            "seconds": time.perf_counter() - clock, "losses": []}
    if train_steps:
        texts = corpus_texts(corpus) if corpus else domain_texts()
        made["losses"] = pretrain_tiny(path, texts, train_steps, seed=spec.seed, progress=progress)
    return made


class TinyModelConfig(BaseModel):
    """The demo's two tiny models, with one tokenizer: a base (the stand-in for falcon-7b) trained on plain domain
    text, and an instruct model (for falcon-7b-instruct): the base trained further on the prompt formats."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Literal["falcon", "llama"] = "falcon"  # falcon: the architecture of falcon-7b
    layers: int = Field(2, ge=1)  # falcon-7b has 32
    hidden: int = Field(128, ge=8)  # falcon-7b has 4544
    heads: int = Field(4, ge=1)  # falcon-7b has 71
    vocab: int = Field(2000, ge=300)  # falcon-7b has 65,024
    train_steps: int = Field(400, ge=1)  # the base: pages, seed tasks, reading passages; ~95 s on 2 cores
    seq_len: int = Field(640, ge=16)  # the base's sequences: a catalog page with its question is ~600 tokens
    batch_size: int = Field(4, ge=1)
    instruct_steps: int = Field(450, ge=0)  # the instruct model, from the base: ~105 s; 0: no instruct model
    seed: int = 0  # weight initialisation and batch order


def _steps_said(model: str, say):
    if say is None:
        return None

    def progress(done: int, total: int, loss: float) -> None:
        if done % 10 == 0 or done == total:
            say(f"tiny-model: {model}: step {done} of {total}, loss {loss:.2f}")
    return progress


def train_pair(config: TinyModelConfig, out: Outputs, pages=None, say=None, seed_file: Path | None = None,
               held_out=None) -> StepResult:
    """The tiny-model stage: the base in out["model"], the instruct model in out["instruct"], their losses. `pages`: a
    recipe's own pages (`workbench.core.pages.read_pages`), which both models then read in place of the bundled
    catalog, beside the seed tasks (`seed_file`: the recipe's, which name no programme of the bundled catalog);
    the tokenizer learns their words. `say` gets the step counts ("base:
    step 120 of 400, loss 2.31"), a line every 10 steps. `held_out(question)`: true for a question the pair must
    not be taught (an eval suite's, or a near-duplicate of one): its reading passage and its listing are left out."""
    from workbench.core.catalog import SEED_TASKS

    if pages is None:
        corpus, programmes, questions = default_corpus(), load_catalog(), catalog_questions
    else:
        out["pages.txt"].parent.mkdir(parents=True, exist_ok=True)
        out["pages.txt"].write_text("\n\n".join(p.text for p in pages) + "\n", encoding="utf-8")
        corpus, programmes, questions = [out["pages.txt"], seed_file or SEED_TASKS], pages, page_questions
    questions = without(questions, held_out)
    ledger = out.start(config, corpus, drops=False)
    spec = TinySpec(**config.model_dump(include={"arch", "layers", "hidden", "heads", "vocab", "seed"}))
    base = build_tiny_model(out["model"], spec, corpus)
    texts = base_texts(questions=questions) if pages is None else \
        base_texts(programmes=programmes, questions=questions, seed_file=seed_file)
    losses = {"base": pretrain_tiny(base, texts, config.train_steps, seq_len=config.seq_len,
                                    batch_size=config.batch_size, seed=config.seed, aligned=True,
                                    progress=_steps_said("base", say), checkpoint=out["base.checkpoint"])}
    instruct = out["instruct"]
    shutil.rmtree(instruct, ignore_errors=True)
    if config.instruct_steps:
        shutil.copytree(base, instruct)
        asked = [q for p in programmes for q, _ in questions(p)]
        texts = domain_texts(seed=config.seed, questions=questions, doc_questions=8, doc_listings=6,
                             more_tasks=asked, programmes=None if pages is None else programmes,
                             seed_file=seed_file)
        losses["instruct"] = pretrain_tiny(instruct, texts, config.instruct_steps, seq_len=config.seq_len,
                                           batch_size=config.batch_size, seed=config.seed, aligned=True,
                                           progress=_steps_said("instruct", say),
                                           checkpoint=out["instruct.checkpoint"])
    atomic_write_json(out["losses.json"], {name: [round(x, 4) for x in values] for name, values in losses.items()})
    for name in ("base.checkpoint", "instruct.checkpoint"):  # the stage is done: nothing left to resume
        out[name].unlink(missing_ok=True)
    parameters = json.loads((base / "tiny.json").read_text())["parameters"]
    counts = {"parameters": parameters, "train_steps": config.train_steps,
              "first_loss_x100": round(losses["base"][0] * 100), "last_loss_x100": round(losses["base"][-1] * 100)}
    if "instruct" in losses:
        counts.update(instruct_steps=config.instruct_steps,
                      instruct_last_loss_x100=round(losses["instruct"][-1] * 100))
    return out.finish(ledger, counts)

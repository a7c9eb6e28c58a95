"""Every prompt the workbench sends to a model, in one place, each with a template id for lineage.

The answer format is Dolly-style sections (instruction, optional context, response); generation prompts
follow Self-Instruct (Wang et al. 2022, https://arxiv.org/abs/2212.10560) and its released code.
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.core.records import CATEGORIES, Record

ADVISOR_SYSTEM_PROMPT = ("You are an intelligent assistant for answering questions related to courses and programs "
                         "at the university. Answer the questions from prospective students.")
INTRO = ("Below is an instruction that describes a task. "
         "Write a response that appropriately completes the request.")
INSTRUCTION_KEY = "### Instruction:"
CONTEXT_KEY = "### Context:"
RESPONSE_KEY = "### Response:"
END_KEY = "### End"

ANSWER_TEMPLATE_ID = "dolly-sections/v1"
BOOTSTRAP_TEMPLATE_ID = "self-instruct/bootstrap/v1"
CATEGORY_TEMPLATE_ID = "workbench/category/v1"
IS_CLASSIFICATION_TEMPLATE_ID = "self-instruct/is-classification/v1"
INSTANCE_INPUT_FIRST_TEMPLATE_ID = "self-instruct/input-first/v1"
INSTANCE_OUTPUT_FIRST_TEMPLATE_ID = "self-instruct/output-first/v1"
DOC_QUESTIONS_TEMPLATE_ID = "workbench/doc-questions/v1"

# Stop strings for section-formatted answers: the model starts a new section when it is done.
ANSWER_STOPS = (END_KEY, INSTRUCTION_KEY, "\n\n\n")


def format_prompt(instruction: str, context: str = "", system: str | None = None) -> str:
    """The prompt part of the answer format; the response follows it directly."""
    parts = [system or INTRO, f"{INSTRUCTION_KEY}\n{instruction.strip()}"]
    if context.strip():
        parts.append(f"{CONTEXT_KEY}\n{context.strip()}")
    parts.append(f"{RESPONSE_KEY}\n")
    return "\n\n".join(parts)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(instruction: str, context: str = "", system: str | None = None, tokenizer=None,
                 chat_template: bool = True) -> str:
    """The prompt part as finetuning, evaluation and `ask` all build it: the tokenizer's chat template when it has
    one (and `chat_template`), else Dolly sections."""
    if chat_template and tokenizer is not None and has_chat_template(tokenizer):
        user = instruction.strip() + (f"\n\n{context.strip()}" if context.strip() else "")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return format_prompt(instruction, context, system)


def format_example(record: Record, system: str | None = None) -> str:
    """A whole training example: prompt, response and the end marker."""
    return f"{format_prompt(record.instruction, record.context, system)}{record.response.strip()}\n\n{END_KEY}"


def bootstrap_prompt(instructions: Sequence[str], classification: bool = False) -> str:
    """Self-Instruct's instruction-generation prompt: k numbered tasks, ending with "k+1."."""
    if classification:
        header = ("Come up with a series of classification tasks. "
                  "Try to specify the possible output labels when possible.\n")
    else:
        header = "Come up with a series of tasks:\n"
    lines = [f"{i}. {' '.join(text.split()).rstrip(':')}" for i, text in enumerate(instructions, start=1)]
    return header + "\n".join(lines) + f"\n{len(instructions) + 1}."


def category_prompt(instruction: str, examples: Sequence[Record]) -> str:
    """Ask which of Dolly's eight categories a task belongs to, few-shot from seeds."""
    shots = "".join(f"Task: {' '.join(r.instruction.split())}\nCategory: {r.category}\n\n" for r in examples)
    return (f"Classify each task into one of these categories: {', '.join(CATEGORIES)}.\n\n"
            f"{shots}Task: {' '.join(instruction.split())}\nCategory:")


def is_classification_prompt(instruction: str, examples: Sequence[Record]) -> str:
    """Self-Instruct's question: is this a classification task with finite output labels?"""
    shots = "".join(f"Task: {' '.join(r.instruction.split())}\nIs it classification? "
                    f"{'Yes' if r.meta.get('is_classification') else 'No'}\n\n" for r in examples)
    return ("Can the following task be regarded as a classification task with finite output labels?\n\n"
            f"{shots}Task: {' '.join(instruction.split())}\nIs it classification?")


def instance_prompt(instruction: str, examples: Sequence[Record], output_first: bool) -> str:
    """Ask for input/output instances of a task: output first (class label, then input) for classification."""
    if output_first:
        header = ("Given the classification task definition and the class labels, "
                  "generate an input that corresponds to each of the class labels.\n\n")
        shots = "".join(f"Task: {r.instruction.strip()}\nClass label: {r.response.strip()}\n"
                        f"{'Input: ' + r.context.strip() if r.context.strip() else ''}\n\n" for r in examples)
        return f"{header}{shots}Task: {instruction.strip()}\nClass label:"
    header = ("Come up with examples for the following tasks. "
              "Try to generate multiple examples when possible. "
              "If the task doesn't require additional input, you can generate the output directly.\n\n")
    shots = "".join(f"Task: {r.instruction.strip()}\n"
                    f"{'Input: ' + r.context.strip() + chr(10) if r.context.strip() else ''}"
                    f"Output: {r.response.strip()}\n\n" for r in examples)
    return f"{header}{shots}Task: {instruction.strip()}\n"


def doc_questions_prompt(document: str, n: int) -> str:
    """Questions a prospective student could ask that the document answers."""
    return (f"Using only the information below about the course at the university, formulate {n} possible "
            f"questions from prospective students.\n\n{document.strip()}\n\nQuestions:\n1.")

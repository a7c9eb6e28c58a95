"""The next-token distribution of a causal LM, step by step: what "generating the next token" means, live.

At each step the model's logits for the last position go through a softmax; the top-k tokens and their
probabilities are shown, and the most likely token is appended (greedy) before the next step. With a second model
both see the same text at every step (the first model's choices), so their distributions can be read side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.models import Model


@dataclass(frozen=True)
class TokenChoice:
    token_id: int
    text: str  # the token decoded on its own (a leading space shows as a space)
    probability: float


@dataclass(frozen=True)
class Step:
    text: str  # the text the model saw
    choices: list[TokenChoice]  # top-k, most likely first
    covered: float  # total probability of the top-k


def distribution(model: Model, text: str, top_k: int = 10) -> Step:
    """The top-k next tokens after `text` and their probabilities (softmax of the last position's logits)."""
    import torch

    tokenizer = model.tokenizer
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids.to(model.model.device)
    if ids.shape[1] == 0:
        ids = torch.tensor([[tokenizer.bos_token_id or tokenizer.eos_token_id]], device=model.model.device)
    with torch.inference_mode():
        logits = model.model(input_ids=ids).logits[0, -1].float()
    probabilities = torch.softmax(logits, dim=-1)
    top = torch.topk(probabilities, min(top_k, probabilities.shape[0]))
    choices = [TokenChoice(int(i), tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)]
    return Step(text, choices, float(top.values.sum()))


def next_tokens(models: list[Model], prompt: str, top_k: int = 10, steps: int = 1) -> list[list[Step]]:
    """For each step, one Step per model; the text grows by the first model's most likely token."""
    table: list[list[Step]] = []
    text = prompt
    for _ in range(steps):
        row = [distribution(m, text, top_k) for m in models]
        table.append(row)
        best = row[0].choices[0]
        if best.token_id == models[0].tokenizer.eos_token_id:
            break
        text += best.text
    return table

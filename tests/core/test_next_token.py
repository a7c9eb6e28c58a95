"""`inspect next-token`: probabilities from the model's own logits, step by step, two models side by side."""

import pytest
import torch

from workbench.core.models import get_model
from workbench.core.next_token import distribution, next_tokens


def test_probabilities_match_the_models_logits(tiny_generator):
    model = get_model(str(tiny_generator))
    step = distribution(model, "The semester fee is", top_k=5)
    ids = model.tokenizer("The semester fee is", return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        expected = torch.softmax(model.model(input_ids=ids).logits[0, -1].float(), dim=-1)
    assert [c.token_id for c in step.choices] == torch.topk(expected, 5).indices.tolist()
    for choice in step.choices:
        assert choice.probability == pytest.approx(float(expected[choice.token_id]), abs=1e-6)
    probabilities = [c.probability for c in step.choices]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(step.covered) and 0 < step.covered <= 1 + 1e-6


def test_steps_follow_the_first_models_choice(tiny_generator, tiny_falcon):
    first, second = get_model(str(tiny_generator)), get_model(str(tiny_falcon))
    table = next_tokens([first, second], "The programme", top_k=3, steps=3)
    assert len(table) in (1, 2, 3) and all(len(row) == 2 for row in table)
    for before, after in zip(table, table[1:]):
        assert after[0].text == before[0].text + before[0].choices[0].text
        assert after[1].text == after[0].text  # both models see the same text


def test_inspect_command(tiny_generator, invoke):
    result = invoke("inspect", "next-token", "--model", tiny_generator, "The semester fee is", "--top-k", "4",
                    "--steps", "2")
    assert result.exit_code == 0, result.output
    assert "Step 1: after 'The semester fee is'" in result.output and "Step 2" in result.output

"""DPO (`finetune --method dpo`) on a tiny Falcon with trl's DPOTrainer: it learns held-out preferences, the margin
grows, plain peft loads the result, an SFT adapter can be the reference, resume, and bad pairs files."""

import json
import random
import shutil

import pytest
import torch

from pipelines import finetune as ft
from workbench.core.prompts import format_prompt

COURSES = ["STAT 101", "MATH 201", "CS 110", "BIO 150", "CHEM 120", "PHYS 101", "ECON 210", "HIST 105"]


def preference_pairs(n: int, seed: int = 0) -> list[dict]:
    """A preference a model can learn from few examples: a course named in a full sentence over noise."""
    rng = random.Random(seed)
    return [{"prompt": format_prompt(f"Which course should I take for topic {seed}-{i}?"),
             "chosen": f"Take {rng.choice(COURSES)}: it covers the topic well.",
             "rejected": f"{rng.choice(['no', 'maybe', 'idk'])} {rng.randint(0, 999)} ???",
             "source": "test", "chosen_id": f"c{seed}-{i}", "rejected_id": f"r{seed}-{i}"}
            for i in range(n)]


def write_pairs(path, pairs):
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


def completion_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    """Sum of the log-probabilities of the completion (and EOS) after the prompt, as DPO scores it."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return float(logps[len(prompt_ids) - 1:].sum())


@pytest.mark.slow
def test_dpo_learns_held_out_preferences_and_plain_peft_loads_it(tiny_falcon, tmp_path, invoke):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_pairs(tmp_path / "pairs.jsonl", preference_pairs(48))
    out = tmp_path / "dpo"
    result = invoke("finetune", "--method", "dpo", "--base", tiny_falcon, "--data", data, "-o", out, "--epochs", "3",
                    "--lr", "5e-3", "--batch-size", "4", "--eval-split", "0", "--quant", "none")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    steps = manifest["dpo_steps"]
    assert manifest["method"] == "dpo" and manifest["ref_adapter"] is None and len(steps) >= 3
    assert steps[-1]["rewards/margins"] > steps[0]["rewards/margins"] + 1.0  # the margin grows
    assert steps[-1]["loss"] < steps[0]["loss"] and set(steps[0]) >= {"rewards/chosen", "rewards/rejected",
                                                                      "rewards/accuracies"}
    assert "reward accuracy" in result.output and (out / "loss.png").exists()
    assert not (out / "ref").exists()  # trl's frozen reference copy is not saved as part of the adapter

    # Pairs it never saw, scored with plain transformers + peft: the implicit reward of DPO, log pi - log ref.
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_falcon).eval()
    reference = {}
    held_out = preference_pairs(20, seed=1)
    for n, pair in enumerate(held_out):
        reference[n] = [completion_logprob(base, tokenizer, pair["prompt"], pair[s]) for s in ("chosen", "rejected")]
    tuned = PeftModel.from_pretrained(base, out).eval()
    wins = 0
    for n, pair in enumerate(held_out):
        chosen, rejected = (completion_logprob(tuned, tokenizer, pair["prompt"], pair[s]) for s in ("chosen",
                                                                                                  "rejected"))
        wins += (chosen - reference[n][0]) > (rejected - reference[n][1])
    assert wins / len(held_out) > 0.5, wins


@pytest.mark.slow
def test_dpo_on_an_sft_adapter_resumes_to_the_same_adapter(tiny_falcon, seeds, tmp_path, invoke):
    from safetensors.torch import load_file

    records = tmp_path / "records.jsonl"
    records.write_text("".join(r.to_json() + "\n" for r in seeds if r.response))
    sft = tmp_path / "sft"
    made = invoke("finetune", "--base", tiny_falcon, "--data", records, "-o", sft, "--max-steps", "3",
                  "--batch-size", "2", "--max-length", "256", "--quant", "none")
    assert made.exit_code == 0, made.output
    data = write_pairs(tmp_path / "pairs.jsonl", preference_pairs(24))
    options = ["finetune", "--method", "dpo", "--base", tiny_falcon, "--data", data, "--ref-adapter", sft,
               "--max-steps", "6", "--save-steps", "3", "--batch-size", "2", "--lr", "1e-3", "--quant", "none",
               "--eval-split", "0.2"]
    whole = invoke(*options, "-o", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    manifest = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert manifest["ref_adapter"] == str(sft.resolve()) and manifest["held_out"]["rewards/accuracies"] is not None
    assert "reference the SFT adapter" in whole.output
    sft_weights, dpo_weights = load_file(sft / "adapter_model.safetensors"), load_file(
        tmp_path / "whole" / "adapter_model.safetensors")
    assert sft_weights.keys() == dpo_weights.keys()  # the SFT adapter, trained on
    assert any(not torch.equal(sft_weights[k], dpo_weights[k]) for k in sft_weights)

    # As if killed after checkpoint 3: the resumed run ends where the whole one did.
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "checkpoint-6")
    for name in ("manifest.json", "adapter_model.safetensors"):
        (tmp_path / "cut" / name).unlink()
    resumed = invoke(*options, "-o", tmp_path / "cut", "--resume")
    assert resumed.exit_code == 0, resumed.output
    again = load_file(tmp_path / "cut" / "adapter_model.safetensors")
    for key in dpo_weights:
        assert torch.allclose(again[key], dpo_weights[key], atol=1e-5), key


def test_bad_pairs_are_quarantined_by_line_and_field_and_wrong_options_refused(tiny_falcon, tmp_path, invoke):
    problems = []
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "Q?", "chosen": "A.", "rejected": "B."}) + "\n"
                    + json.dumps({"prompt": "Q?", "chosen": "", "rejected": "B."}) + "\n"
                    + json.dumps({"prompt": "Q?", "chosen": "A."}) + "\n" + "{not json\n")
    pairs = ft.load_pairs(path, problems)
    assert len(pairs) == 1 and [(p.line, p.field) for p in problems] == [(2, "chosen"), (3, "rejected"), (4, "-")]

    dry = invoke("finetune", "--method", "dpo", "--base", tiny_falcon, "--data", path, "--dry-run")
    assert dry.exit_code == 0 and "1 preference pairs" in dry.output and "3 bad line(s)" in dry.output, dry.output
    assert (tmp_path / "pairs.quarantine.jsonl").exists()

    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"instruction": "Q?", "response": "A."}) + "\n")
    refused = invoke("finetune", "--base", tiny_falcon, "--data", records, "-o", tmp_path / "a", "--ref-adapter",
                     tmp_path)
    assert refused.exit_code == 1 and "--ref-adapter is the reference of DPO" in refused.output
    prompt = invoke("finetune", "--method", "dpo", "--system-prompt", "--base", tiny_falcon, "--data", path,
                    "-o", tmp_path / "b")
    assert prompt.exit_code == 1 and "already built" in prompt.output
    not_pairs = invoke("finetune", "--method", "dpo", "--base", tiny_falcon, "--data", records, "-o", tmp_path / "c")
    assert not_pairs.exit_code == 1 and "no preference pair" in not_pairs.output
    adapter = tmp_path / "other-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiiuae/falcon-7b"}))
    other = invoke("finetune", "--method", "dpo", "--base", tiny_falcon, "--data", path, "-o", tmp_path / "d",
                   "--ref-adapter", adapter)
    assert other.exit_code == 1 and "was trained on tiiuae/falcon-7b" in other.output
    assert "Traceback" not in other.output + not_pairs.output + prompt.output + refused.output

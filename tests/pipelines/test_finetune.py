"""LoRA finetuning on tiny Falcon and Llama models: masks, overfitting, 8-bit on the CPU, packing, kill and resume,
merging, the memory preflight."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipelines import finetune as ft
from workbench.core.errors import ConfigError, InputError
from workbench.core.models import load_tokenizer
from workbench.core.records import Record


@pytest.fixture(scope="module")
def twenty(seeds):
    return [r for r in seeds if r.response][:20]


def losses(manifest):
    return [p["loss"] for p in manifest["train_loss"]]


def test_prompt_tokens_are_masked_and_the_response_and_eos_trained(tiny_falcon, twenty):
    tokenizer = load_tokenizer(str(tiny_falcon))
    config = ft.FinetuneConfig()
    encoded = ft.encode(tokenizer, twenty[0], config)
    start = next(i for i, label in enumerate(encoded.labels) if label != ft.IGNORE)
    assert all(label == ft.IGNORE for label in encoded.labels[:start])
    assert encoded.labels[start:] == encoded.input_ids[start:] and encoded.labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(encoded.input_ids[:start]).endswith("### Response:\n")
    assert tokenizer.decode(encoded.input_ids[start:-1]) == twenty[0].response.strip()

    long = Record(instruction="Describe every programme.", response="word " * 400)
    report = ft.dry_run([*twenty, long, Record(instruction="No answer yet")], tokenizer,
                        ft.FinetuneConfig(max_length=256, eval_split=0.1))
    assert report.too_long == [(long.id, report.too_long[0][1])] and report.too_long[0][1] > 256
    assert report.no_response == 1 and report.train + report.eval == 20 and report.eval == 2
    assert report.eos_trained and report.response_key_missing == []
    assert report.masked_text.endswith("### Response:\n") and report.trained_text.endswith(tokenizer.eos_token)
    with_system = ft.prompt_text(tokenizer, twenty[0], ft.FinetuneConfig(system_prompt=True))
    assert with_system.startswith("You are an intelligent assistant for answering questions related to courses")


def test_packing_keeps_examples_apart_and_gives_the_padded_loss(tiny_generator, twenty):
    from transformers import AutoModelForCausalLM

    # A trained model: a random one attends almost uniformly, so a leak between examples barely moves its loss.
    tokenizer = load_tokenizer(str(tiny_generator))
    model = AutoModelForCausalLM.from_pretrained(tiny_generator, dtype=torch.float32).eval()
    examples = [ft.encode(tokenizer, r, ft.FinetuneConfig()) for r in twenty[:6]]
    rows = ft.pack(examples, 400, seed=0)
    assert len(rows) >= 2 and sum(len(e.input_ids) for e in examples) == sum(len(r["input_ids"]) for r in rows)
    assert all(len(r["input_ids"]) <= 400 for r in rows)
    packed = ft.PackedCollator(tokenizer.pad_token_id)(rows)
    padded = ft.PaddedCollator(tokenizer.pad_token_id)(ft.unpacked(examples))
    with torch.inference_mode():
        loss_padded = model(**padded).loss.item()
        loss_packed = model(**packed).loss.item()
        # Without restarting positions the examples would see each other: a different loss.
        leaky = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"])}
        loss_leaky = model(**leaky).loss.item()
    assert loss_packed == pytest.approx(loss_padded, abs=1e-4)
    assert abs(loss_leaky - loss_padded) > 1e-3
    filler = packed["input_ids"].numel() - sum(len(r["input_ids"]) for r in rows)
    assert (padded["attention_mask"] == 0).sum() > filler  # less compute spent on padding


@pytest.mark.parametrize("arch", ["falcon", "llama"])
def test_the_lean_step_gives_the_models_loss_and_gradients(arch, tiny_falcon, tiny_llama, twenty):
    """Logits only at labelled positions, by chunks recomputed in backward, attention with the key/value heads
    expanded (falcon: one shared by all), layers checkpointed: the model's own loss and the same gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pipelines.finetune import step

    base = tiny_falcon if arch == "falcon" else tiny_llama
    tokenizer = load_tokenizer(str(base))
    rows = ft.pack([ft.encode(tokenizer, r, ft.FinetuneConfig()) for r in twenty[:8]], 300, seed=0)
    batch = ft.PackedCollator(tokenizer.pad_token_id)(rows[:3])
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=4, lora_dropout=0.0, init_lora_weights=False,
                                      target_modules=ft.LORA_TARGETS[arch]))
    params = [p for p in model.parameters() if p.requires_grad]
    reference = model(**batch).loss
    expected = torch.autograd.grad(reference, params)
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs=step.checkpointing_kwargs())
    model.get_base_model().enable_input_require_grads()
    model.train()  # checkpointing runs in training mode; dropout is 0
    step.LOSS_CHUNK, chunk = 7, step.LOSS_CHUNK  # several chunks even on these short rows
    try:
        with step.ExpandedKeyValueHeads():
            total, count = step.labelled_loss(model, batch)
        got = torch.autograd.grad(total / count, params)
    finally:
        step.LOSS_CHUNK = chunk
    assert count == int((batch["labels"][:, 1:] != ft.IGNORE).sum()) > 7 * 3
    assert (total / count).item() == pytest.approx(reference.item(), rel=1e-5)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_expanded_key_value_heads_reach_the_fused_kernel_and_the_recomputation():
    """The math path broadcasts one key/value head over all query heads by materialising every score; the mode
    hands sdpa expanded heads instead, also inside a checkpoint's recomputation, with the same result."""
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    from pipelines.finetune import step

    seen = []

    class Seen(step.ExpandedKeyValueHeads):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is F.scaled_dot_product_attention:
                seen.append(args[1].shape[-3])
            return super().__torch_function__(func, types, args, kwargs)

    torch.manual_seed(0)
    query = torch.randn(2, 6, 10, 4, requires_grad=True)
    key, value = (torch.randn(2, 2, 10, 4, requires_grad=True) for _ in range(2))  # 2 groups of 3 query heads

    def attention(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    grouped = F.scaled_dot_product_attention(query, key.repeat_interleave(3, 1), value.repeat_interleave(3, 1),
                                             is_causal=True)
    out = checkpoint(attention, query, key, value, use_reentrant=False, context_fn=lambda: (Seen(), Seen()))
    torch.testing.assert_close(out, grouped)
    out.sum().backward()
    assert seen == [2, 2]  # the forward and the recomputation in backward both went through the mode
    assert key.grad.shape == key.shape and torch.isfinite(key.grad).all()


def _budget_for_rows(base: str, config: ft.FinetuneConfig, rows: int) -> float:
    from pipelines.finetune.memory import _shapes

    model_config, model = _shapes(base)
    return ft.estimate_memory(model_config, model, config, "none", "cpu", rows_per_pass=rows).total_gib + 1e-6


@pytest.mark.slow  # trains three times
def test_a_budget_splits_the_step_into_passes_and_an_out_of_memory_pass_is_halved(tiny_falcon, twenty, tmp_path,
                                                                                    monkeypatch):
    """Fewer rows per pass, more passes: the same updates, so the same loss curve; a pass that runs out of memory
    at step 3 is redone with half the rows and the run goes on to the same result."""
    from pipelines.finetune import step

    config = ft.FinetuneConfig(max_steps=5, batch_size=4, max_length=128, eval_split=0.1, logging_steps=1,
                               dropout=0.0, lr=1e-3, packing=False)
    free = ft.train(str(tiny_falcon), twenty, tmp_path / "free", config)
    assert free.manifest["rows_per_pass"] == 4 and free.manifest["out_of_memory_halvings"] == []
    said = []
    budget = _budget_for_rows(str(tiny_falcon), config, 1)
    assert budget < _budget_for_rows(str(tiny_falcon), config, 2)
    tight = ft.train(str(tiny_falcon), twenty, tmp_path / "tight", config, budget_gib=budget, say=said.append)
    assert tight.manifest["rows_per_pass"] == 1 and "1 of the 4 rows of a step per pass (4 passes" in said[0]
    assert losses(tight.manifest) == pytest.approx(losses(free.manifest), rel=1e-4)
    assert tight.manifest["final_eval_loss"] == pytest.approx(free.manifest["final_eval_loss"], rel=1e-4)

    real, calls = step.labelled_loss, []

    def out_of_memory_once_at_step_3(model, batch):
        calls.append(batch["input_ids"].shape[0])
        if len(calls) == 3:  # the third step's one pass (all its rows)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(model, batch)

    monkeypatch.setattr(step, "labelled_loss", out_of_memory_once_at_step_3)
    said.clear()
    halved = ft.train(str(tiny_falcon), twenty, tmp_path / "halved", config, say=said.append)
    assert halved.manifest["out_of_memory_halvings"] == [{"step": 3, "rows_per_pass": 2}]
    assert halved.manifest["rows_per_pass_at_end"] == 2 and said == [
        "Out of memory at step 3: redoing it with 2 rows per pass"]
    assert calls[2] > 2 and max(calls[3:]) == 2  # step 3 redone, and every later pass, with at most 2 rows
    assert losses(halved.manifest) == pytest.approx(losses(free.manifest), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["falcon", "llama"])
def test_a_tiny_model_overfits_twenty_examples_and_the_adapter_loads(arch, tiny_generator, tiny_llama_generator,
                                                                     twenty, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = tiny_generator if arch == "falcon" else tiny_llama_generator
    config = ft.FinetuneConfig(epochs=40, lr=1e-2, batch_size=1, max_length=512, eval_split=0.0, logging_steps=1,
                               grad_checkpointing=False, dropout=0.0, warmup_ratio=0.0)
    result = ft.train(str(base), twenty, tmp_path / "adapter", config, data_sha256="abc")
    values = losses(result.manifest)
    assert sum(values[-3:]) / 3 < 0.5 * sum(values[:3]) / 3
    manifest = json.loads((tmp_path / "adapter" / "manifest.json").read_text())
    assert manifest["base_model"] == str(base) and manifest["records"] == 20 and manifest["data_sha256"] == "abc"
    assert manifest["quant"] == "none" and manifest["useful_tokens_per_s"] > 0 and manifest["peak_memory_gib"] > 0
    assert manifest["lora_targets"] == ft.LORA_TARGETS[arch]
    assert (tmp_path / "adapter" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter")
    assert sum(1 for name, _ in model.named_parameters() if "lora_A" in name) > 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["falcon", "llama"])
def test_8bit_on_the_cpu_quantizes_the_layers_and_trains(arch, tiny_falcon, tiny_llama, twenty, tmp_path):
    base = tiny_falcon if arch == "falcon" else tiny_llama
    config = ft.FinetuneConfig(quant="8bit", max_steps=3, batch_size=2, max_length=256, eval_split=0.1,
                               logging_steps=1, lr=1e-3)
    result = ft.train(str(base), twenty, tmp_path / "adapter", config)
    assert result.manifest["quant"] == "8bit" and result.manifest["quantized_layers"] > 0
    assert result.manifest["steps"] == 3 and all(torch.isfinite(torch.tensor(losses(result.manifest))))
    assert result.manifest["eval_loss"]


@pytest.mark.slow
def test_an_existing_run_is_not_overwritten_and_resume_needs_a_checkpoint(tiny_falcon, twenty, tmp_path):
    config = ft.FinetuneConfig(max_steps=2, save_steps=1, batch_size=2, max_length=256, eval_split=0.0)
    trained = ft.train(str(tiny_falcon), twenty, tmp_path / "a", config)
    # Fewer steps than logging_steps (10): the first and the last loss are logged all the same.
    assert [p["step"] for p in trained.manifest["train_loss"]] == [1, 2]
    card = (tmp_path / "a" / "README.md").read_text()
    assert "nan" not in card.lower() and "None → None" not in card
    with pytest.raises(InputError, match="already holds checkpoints"):
        ft.train(str(tiny_falcon), twenty, tmp_path / "a", config)
    with pytest.raises(InputError, match="no checkpoint"):
        ft.train(str(tiny_falcon), twenty, tmp_path / "b", config, resume=True)
    with pytest.raises(InputError, match="config, records differ"):
        ft.train(str(tiny_falcon), twenty[:10], tmp_path / "a", config.model_copy(update={"lr": 1e-3}),
                    resume=True)


@pytest.mark.slow
def test_kill_and_resume_reaches_the_same_adapter(tiny_generator, twenty, tmp_path):
    from safetensors.torch import load_file

    data = tmp_path / "data.jsonl"
    data.write_text("".join(r.to_json() + "\n" for r in twenty))
    options = ["--base", str(tiny_generator), "--data", str(data), "--max-steps", "60", "--save-steps", "10",
               "--batch-size", "1", "--max-length", "256", "--eval-split", "0", "--lr", "1e-3",
               "--no-grad-checkpointing", "--quant", "none"]
    killed_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "finetune", *options, "-o", str(killed_dir)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (killed_dir / "checkpoints" / "checkpoint-20" / "trainer_state.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "manifest.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "workbench.cli", "finetune", *options, "-o", str(killed_dir),
                              "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = subprocess.run([sys.executable, "-m", "workbench.cli", "finetune", *options, "-o", str(tmp_path / "whole")],
                           env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = load_file(killed_dir / "adapter_model.safetensors")
    b = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    manifest = json.loads((killed_dir / "manifest.json").read_text())
    assert manifest["resumed"] and manifest["steps"] == 60


@pytest.mark.slow
def test_merge_gives_the_logits_of_base_plus_adapter(tiny_generator, twenty, tmp_path):
    from transformers import AutoModelForCausalLM

    config = ft.FinetuneConfig(max_steps=10, lr=1e-2, batch_size=2, max_length=256, eval_split=0.0, dropout=0.0)
    ft.train(str(tiny_generator), twenty, tmp_path / "adapter", config)
    report = ft.merge(tmp_path / "adapter", tmp_path / "merged", dtype="float32")
    assert report["max_logit_difference"] <= report["tolerance"] and report["dtype"] == "float32"
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_generator)
    assert not torch.equal(merged.lm_head.weight, base.lm_head.weight) or any(
        not torch.equal(p, q) for p, q in zip(merged.parameters(), base.parameters()))
    half = ft.merge(tmp_path / "adapter", tmp_path / "merged16")  # the default: 16-bit
    assert half["dtype"] == "bfloat16" and half["max_logit_difference"] <= half["tolerance"]


def test_the_falcon_7b_estimate_adds_up_from_its_shapes_and_fits_the_budget_by_passes(tmp_path):
    from transformers import FalconConfig

    FalconConfig().save_pretrained(tmp_path / "falcon-7b")  # falcon-7b's shapes, 6.92 B parameters
    base = str(tmp_path / "falcon-7b")
    anchor = ft.FinetuneConfig(batch_size=8, max_length=512, grad_checkpointing=True)
    int8 = ft.preflight(base, anchor.model_copy(update={"quant": "8bit"}), None)
    bf16 = ft.preflight(base, anchor.model_copy(update={"quant": "none"}), None)
    upcast = ft.preflight(base, anchor.model_copy(update={"quant": "8bit", "kbit_fp32": True}), None)
    # Weights: 6.63 B int8 parameters in the linears, 0.30 B others (embedding tied to the head, norms) in bf16.
    assert int8.parts["weights"] == pytest.approx((6.63e9 + 0.30e9 * 2) / 2 ** 30, rel=0.02)
    assert bf16.parts["weights"] == pytest.approx(6.92e9 * 2 / 2 ** 30, rel=0.01)
    assert upcast.parts["weights"] - int8.parts["weights"] == pytest.approx(0.30e9 * 2 / 2 ** 30, rel=0.02)
    # The checkpoints: 34 hidden states of 8 x 512 tokens x 4,544, in bf16; fp32 when the embedding is upcast.
    assert int8.parts["checkpointed activations"] == pytest.approx(34 * 4096 * 4544 * 2 / 2 ** 30, rel=0.01)
    assert upcast.parts["checkpointed activations"] == pytest.approx(2 * int8.parts["checkpointed activations"],
                                                                     rel=0.01)
    assert int8.rows_per_pass == 8 and int8.total_gib < upcast.total_gib < bf16.total_gib
    # The default on a 24 GB card fits whole steps; under 12 GiB the step goes through in passes of fewer rows.
    default = ft.FinetuneConfig(quant="8bit")
    assert ft.preflight(base, default, 24).rows_per_pass == 8
    # 8 rows a pass need 14.6 GiB, 4 rows 11.4: under 12 GiB the plan halves once, and not further.
    halved = ft.preflight(base, default, 12)
    assert halved.rows_per_pass == 4 and halved.total_gib == pytest.approx(11.38, abs=0.01)
    assert ft.preflight(base, default, 11).rows_per_pass == 2
    with pytest.raises(ConfigError, match="one row of 1024 tokens per pass needs about 9.0 GiB") as refused:
        ft.preflight(base, default, 8.5)
    assert refused.value.hint.startswith("--quant 4bit needs about")
    with pytest.raises(ConfigError, match="over the 1 GiB budget") as nothing:
        ft.preflight(base, anchor, 1)
    assert "nothing down to --max-length 128 fits" in nothing.value.hint


@pytest.mark.slow
def test_cli_dry_run_finetune_and_merge(tiny_generator, twenty, tmp_path, invoke):
    data = tmp_path / "curated.jsonl"
    data.write_text("".join(r.to_json() + "\n" for r in twenty))
    dry = invoke("finetune", "--base", tiny_generator, "--data", data, "--dry-run", "--max-length", "128")
    assert dry.exit_code == 0, dry.output
    assert "<<MASKED>>" in dry.output and "<<TRAINED>>" in dry.output and "EOS is a trained token: yes" in dry.output
    assert "longer than 128 tokens (dropped)" in dry.output and "too long:" in dry.output
    out = tmp_path / "adapter"
    trained = invoke("finetune", "--base", tiny_generator, "--data", data, "-o", out, "--max-steps", "4",
                     "--batch-size", "2", "--max-length", "128")
    assert trained.exit_code == 0, trained.output
    assert "Adapter in" in trained.output and (out / "adapter_config.json").exists()
    # The stage's own files beside the adapter: what it dropped (through the ledger) and its manifest.
    stage = json.loads((tmp_path / "adapter.manifest.json").read_text())
    too_long = stage["ledger"]["drop: longer than max_length"]
    assert too_long > 0 and stage["counts"]["steps"] == 4 and stage["counts"]["examples"] + too_long <= 20
    dropped = [json.loads(line) for line in (tmp_path / "adapter.rejected.jsonl").read_text().splitlines()]
    assert len(dropped) == too_long and dropped[0]["lineage"][-1]["detail"]["max_length"] == 128
    assert json.loads((out / "manifest.json").read_text())["data"] == str(data.resolve())
    # A budget that fits one row at a time: said before training, and in the summary.
    budget = _budget_for_rows(str(tiny_generator), ft.FinetuneConfig(batch_size=2, max_length=128), 1)
    passes = invoke("finetune", "--base", tiny_generator, "--data", data, "-o", tmp_path / "passes", "--max-steps",
                    "2", "--batch-size", "2", "--max-length", "128", "--budget-gib", f"{budget:.6f}")
    assert passes.exit_code == 0, passes.output
    assert "1 of the 2 rows of a step per pass (2 passes, the same update)" in passes.output
    assert "1 of 2 rows per pass for the" in passes.output
    refused = invoke("finetune", "--base", tiny_generator, "--data", data, "-o", tmp_path / "x",
                     "--budget-gib", "0.0001")
    assert refused.exit_code == 1 and "over the 0.0001 GiB budget" in refused.output and "Hint:" in refused.output
    merged = invoke("merge", out, "-o", tmp_path / "merged", "--dtype", "float32")
    assert merged.exit_code == 0 and "logits agree" in merged.output
    assert Path(tmp_path / "merged" / "merge.json").exists()


def test_a_chat_template_replaces_the_sections_and_masks_the_same_way(tiny_falcon, twenty):
    tokenizer = load_tokenizer(str(tiny_falcon))
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    record = Record(instruction="Is there a spring intake?", context="Start: October and March.", response="Yes.")
    config = ft.FinetuneConfig(system_prompt=True)
    prompt = ft.prompt_text(tokenizer, record, config)
    assert prompt.startswith("<|system|>\nYou are an intelligent assistant") and prompt.endswith("<|assistant|>\n")
    assert "Start: October and March." in prompt and "### Response:" not in prompt
    encoded = ft.encode(tokenizer, record, config)
    trained = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != ft.IGNORE]
    assert tokenizer.decode(trained) == "Yes." + tokenizer.eos_token
    report = ft.dry_run([record, *twenty[:3]], tokenizer, config)
    assert report.chat_template and report.eos_trained
    assert not ft.uses_chat_template(tokenizer, config.model_copy(update={"chat_template": "never"}))


@pytest.mark.slow
def test_gpu_verify_runs_every_figure_on_tiny_shapes_and_the_memory_estimate_holds(tmp_path):
    """bench/gpu_verify.sh --tiny on the CPU: each of its four steps runs and prints its summary line; the memory
    account at falcon-7b's widths (one layer) is within 20% of the measurement."""
    done = subprocess.run(["bash", "bench/gpu_verify.sh", "--tiny"], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, env={**os.environ, "LOGS": str(tmp_path),
                                                               "PYTHON": sys.executable}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    memory = next(line for line in lines if line.startswith("memory account: estimate"))
    assert 0.8 <= float(memory.rsplit("ratio ", 1)[1]) <= 1.25
    assert any(line.startswith("finetune default on a 24 GiB card: finished 4 steps") for line in lines)
    assert any(line.startswith("speed ratio: ") for line in lines)
    assert any(line.startswith("generation ratio ") for line in lines)


@pytest.mark.slow
def test_eval_while_training_scores_each_checkpoint_and_keeps_the_best(tiny_generator, twenty, tmp_path):
    """closed_qa's metrics (with CIs) at every checkpoint in the manifest; --keep-best grounded makes the best
    checkpoint's adapter the adapter, even when training went on past it."""
    from safetensors.torch import load_file

    config = ft.FinetuneConfig(max_steps=6, batch_size=2, max_length=256, eval_split=0.0, logging_steps=1,
                               lr=5e-3, eval_suite="closed_qa", eval_every=2, eval_limit=6, keep_best="grounded")
    said = []
    result = ft.train(str(tiny_generator), twenty, tmp_path / "adapter", config, say=said.append)
    history = result.manifest["suite_eval"]
    assert [e["step"] for e in history] == [2, 4, 6] and all(e["items"] == 6 for e in history)
    grounded = [e["metrics"]["grounded"] for e in history]
    assert all(g["n"] > 0 and g["ci_low"] - 1e-9 <= g["mean"] <= g["ci_high"] + 1e-9 for g in grounded), grounded
    best = max(range(3), key=lambda i: (grounded[i]["mean"], -i))  # ties: the earliest
    kept = result.manifest["kept_checkpoint"]
    assert kept["step"] == history[best]["step"] and kept["mean"] == grounded[best]["mean"]
    assert f"Keeping step {kept['step']}: grounded" in said[-1]
    assert sum(line.startswith("Step ") and "closed_qa" in line for line in said) == 3
    final = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    chosen = load_file(str(tmp_path / "adapter" / "best-checkpoint" / "adapter_model.safetensors"))
    assert final.keys() == chosen.keys() and all(torch.equal(final[k], chosen[k]) for k in final)
    if kept["step"] != 6:  # the last checkpoint's weights differ: the adapter is not simply the last state
        last = load_file(str(tmp_path / "adapter" / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors"))
        assert any(not torch.equal(final[k], last[k]) for k in final)
    # As if killed just after checkpoint 4: the resumed run evaluates only what it redoes.
    import shutil

    shutil.rmtree(tmp_path / "adapter" / "checkpoints" / "checkpoint-6")
    said.clear()
    again = ft.train(str(tiny_generator), twenty, tmp_path / "adapter", config, resume=True, say=said.append)
    assert [e["step"] for e in again.manifest["suite_eval"]] == [2, 4, 6]
    assert again.manifest["suite_eval"][:2] == history[:2]
    assert [line.split(":")[0] for line in said if line.startswith("Step ")] == ["Step 6"]
    # As if killed while checkpoint 6 was being evaluated (saved whole, its result not yet written): the resumed
    # run evaluates it, not silently skips it.
    history_file = tmp_path / "adapter" / "suite_eval.json"
    history_file.write_text(json.dumps(json.loads(history_file.read_text())[:2]))
    (tmp_path / "adapter" / "checkpoints" / "checkpoint-6" / "suite_eval.json").unlink()
    said.clear()
    resumed = ft.train(str(tiny_generator), twenty, tmp_path / "adapter", config, resume=True, say=said.append)
    assert [e["step"] for e in resumed.manifest["suite_eval"]] == [2, 4, 6]
    assert [line.split(":")[0] for line in said if line.startswith("Step ")] == ["Step 6"]
    with pytest.raises(ConfigError, match="suite closed_qa's checkpoints report"):
        ft.train(str(tiny_generator), twenty, tmp_path / "other", config.model_copy(update={"keep_best": "bleu"}))
    with pytest.raises(ConfigError, match="toxicity_rate \\(not measured at checkpoints"):
        ft.train(str(tiny_generator), twenty, tmp_path / "other",
                 config.model_copy(update={"keep_best": "toxicity_rate"}))

import json

import pytest
import torch

from workbench.core import models
from workbench.core.errors import HubUnavailableError, ModelLoadError, QuantizationError
from workbench.core.models import GenerationParams, count_quantized_layers, cut_at_stop, get_model, verify_quantization

PROMPTS = ["Do I have to know programming?", "Fees", "When does the Data Science MSc start and how long is it?"]


def test_tiny_falcon_has_falcon_7b_layout(tiny_falcon):
    config = json.loads((tiny_falcon / "config.json").read_text())
    assert config["model_type"] == "falcon"
    assert config["multi_query"] and config["parallel_attn"] and not config["bias"]
    assert not config["new_decoder_architecture"] and not config["alibi"]
    made = json.loads((tiny_falcon / "tiny.json").read_text())
    assert made["parameters"] < 1_000_000


def test_tiny_build_is_deterministic(tmp_path, tiny_falcon):
    from workbench.core.tiny import TinySpec, build_tiny_model

    again = build_tiny_model(tmp_path / "again", TinySpec(arch="falcon"))
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_falcon / name).read_bytes()


def test_load_and_batched_generate_keeps_prompt_order(tiny_falcon):
    model = get_model(str(tiny_falcon))
    assert model.device == "cpu" and model.quantized_layers == 0
    assert model.tokenizer.padding_side == "left"
    params = GenerationParams(max_new_tokens=6, batch_size=2)
    forward = model.generate(PROMPTS, params)
    backward = model.generate(PROMPTS[::-1], params)
    assert len(forward) == 3 and all(isinstance(text, str) for text in forward)
    # Batches are formed by length, so both orders run the same batches: the answers must just be mirrored.
    assert backward[::-1] == forward


def test_sampling_is_reproducible_with_a_seed(tiny_falcon):
    """The seed decides the sample: the same seed repeats (whatever drew on torch's RNG in between), another seed
    gives other text, and neither is the greedy answer (so sampling really happened)."""
    model = get_model(str(tiny_falcon))
    params = GenerationParams(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=3)
    first = model.generate(PROMPTS, params)
    torch.manual_seed(12345)
    torch.rand(100)  # the global RNG moved on: the seed, not the state left behind, decides
    assert model.generate(PROMPTS, params) == first
    other = model.generate(PROMPTS, params.model_copy(update={"seed": 4}))
    assert other != first and sum(a != b for a, b in zip(other, first)) >= 2
    greedy = model.generate(PROMPTS, params.model_copy(update={"temperature": 0.0}))
    assert greedy != first and greedy != other


def test_cut_at_stop():
    assert cut_at_stop("answer\n### Instruction: more", ("###", "\n\n")) == "answer\n"
    assert cut_at_stop("no stop here", ("###",)) == "no stop here"


@pytest.mark.parametrize("arch, expected_layers", [("falcon", 8), ("llama", 14)])
def test_8bit_on_cpu_really_quantizes(arch, expected_layers, request):
    path = request.getfixturevalue(f"tiny_{arch}")
    model = get_model(str(path), quant="8bit")
    # Every decoder linear (falcon: qkv, dense, h_to_4h, 4h_to_h per layer), lm_head kept in full precision.
    assert model.quantized_layers == expected_layers
    assert count_quantized_layers(model.model)["8bit"] == expected_layers
    assert model.generate(PROMPTS[:2], GenerationParams(max_new_tokens=4))


def test_8bit_falcon_computes_the_same_function(tiny_falcon):
    full = get_model(str(tiny_falcon))
    int8 = get_model(str(tiny_falcon), quant="8bit")
    ids = full.tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        a, b = full.model(ids).logits.float(), int8.model(ids).logits.float()
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_4bit_on_cpu_really_quantizes(tiny_falcon):
    assert get_model(str(tiny_falcon), quant="4bit").quantized_layers == 8


def test_the_falcon_trap_plain_transformers_does_not_quantize(tiny_falcon):
    """transformers 5.x: load_in_8bit on Falcon quantizes nothing yet reports 8-bit; we catch it."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_falcon, quantization_config=BitsAndBytesConfig(
        load_in_8bit=True), device_map={"": "cpu"})
    assert count_quantized_layers(model)["8bit"] == 0
    with pytest.raises(QuantizationError, match="0 of 9 linear layers were quantized"):
        verify_quantization(model, "8bit", "tiny-falcon")


def test_clear_error_when_quantization_is_impossible(tiny_falcon, monkeypatch):
    # An architecture whose linear class we do not know: loading must fail loudly, not run in full precision.
    monkeypatch.setattr(models, "LINEAR_SUBCLASSES", {})
    with pytest.raises(QuantizationError, match="8bit was asked for but 0 of"):
        get_model(str(tiny_falcon), quant="8bit")


def test_loading_restores_falcon_linear(tiny_falcon):
    from transformers.models.falcon import modeling_falcon

    before = modeling_falcon.FalconLinear
    get_model(str(tiny_falcon), quant="8bit")
    assert modeling_falcon.FalconLinear is before
    assert type(get_model(str(tiny_falcon)).model.transformer.h[0].mlp.dense_h_to_4h) is before


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no-such-model: no such model folder"):
        get_model(str(tmp_path / "no-such-model"))
    with pytest.raises(HubUnavailableError, match="tiiuae/falcon-7b: not a local path, and loading it from the hub"):
        get_model("tiiuae/falcon-7b")


def test_unknown_device_or_dtype():
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        models.resolve_dtype("int3", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            models.resolve_device("cuda")

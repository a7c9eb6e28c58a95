"""Load causal LMs by hub id or local folder, with quantization that is verified, and batched generation.

`get_model(name, ...)` returns a Model whose `generate(prompts, params)` keeps the prompts' order; the CLI,
the pipelines and the tests all go through it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench.core.errors import HubUnavailableError, ModelLoadError, QuantizationError
from workbench.core.hub import hub_error, looks_like_hub_id

Quant = Literal["none", "8bit", "4bit"]

# Linear layers that subclass nn.Linear. transformers 5.x replaces only modules whose type *is* nn.Linear
# (integrations/bitsandbytes.py: `type(module) is nn.Linear`), so these stay full precision under
# load_in_8bit while the model still reports is_loaded_in_8bit. Measured on 5.24 (CPU) and 5.17 (H200).
# FalconLinear computes `x @ W.T (+ b)`, the same function as nn.Linear, so building the model with
# nn.Linear in its place changes nothing but lets bitsandbytes replace it.
LINEAR_SUBCLASSES = {"falcon": ("transformers.models.falcon.modeling_falcon", "FalconLinear")}


class GenerationParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(128, ge=1)  # tokens generated per prompt at most
    temperature: float = Field(0.0, ge=0.0)  # 0 = greedy decoding
    top_p: float = Field(1.0, gt=0.0, le=1.0)  # nucleus sampling mass, used when temperature > 0
    stop: tuple[str, ...] = ()  # the completion is cut before the first of these strings
    seed: int = 0  # sampling seed, so sampled output is reproducible
    batch_size: int = Field(8, ge=1)  # prompts per forward pass; does not change greedy results

    def override(self, **values: Any) -> GenerationParams:
        """These parameters with the given ones changed (None: left as they are), validated."""
        return GenerationParams(**{**self.model_dump(), **{k: v for k, v in values.items() if v is not None}})


def release_memory() -> None:
    """Give back what a generation or a training pass held (activations, a KV cache) to the device: the process
    stays at its weights' size. Serving calls it after each request, finetuning after an out-of-memory pass."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available", hint="use --device cpu")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # bf16 halves memory on GPUs; CPUs run fp32 much faster than bf16 for small models.
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16") from None


@contextlib.contextmanager
def linear_subclasses_as_linear(model_type: str | None):
    """While loading `model_type`, build its nn.Linear subclasses as plain nn.Linear (see LINEAR_SUBCLASSES)."""
    import torch

    target = LINEAR_SUBCLASSES.get(model_type or "")
    if target is None:
        yield
        return
    module = importlib.import_module(target[0])
    original = getattr(module, target[1])
    setattr(module, target[1], torch.nn.Linear)
    try:
        yield
    finally:
        setattr(module, target[1], original)


def count_quantized_layers(model) -> dict[str, int]:
    """How many linear layers bitsandbytes really holds in 8-bit and 4-bit."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return {"8bit": 0, "4bit": 0}
    counts = {"8bit": 0, "4bit": 0}
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear8bitLt):
            counts["8bit"] += 1
        elif isinstance(module, bnb.nn.Linear4bit):
            counts["4bit"] += 1
    return counts


def verify_quantization(model, quant: Quant, name: str) -> int:
    """Return the number of quantized layers; raise when quantization was asked for and none happened."""
    import torch

    if quant == "none":
        return 0
    counts = count_quantized_layers(model)
    if counts[quant] == 0:
        linear = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
        raise QuantizationError(
            f"{name}: {quant} was asked for but 0 of {linear} linear layers were quantized",
            hint="the architecture's linear layers are not plain nn.Linear; load with --quant none, "
                 "or add the class to workbench.core.models.LINEAR_SUBCLASSES")
    return counts[quant]


def _quantization_config(quant: Quant, compute_dtype):
    from transformers import BitsAndBytesConfig

    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def _load_error(name: str, error: Exception) -> ModelLoadError | HubUnavailableError:
    if looks_like_hub_id(name):
        return hub_error(name, error)
    if not Path(name).exists():
        return ModelLoadError(f"{name}: no such model folder")
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return ModelLoadError(f"{name}: cannot load ({type(error).__name__}: {first})")


@dataclass(frozen=True)
class Completion:
    text: str
    # "stop": the model ended or hit a stop string; "length": cut off at max_new_tokens; "error": not answered
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # Why this one prompt was not answered (longer than the model's context, refused by the server): the stage drops
    # its record with this reason and goes on with the others.
    error: str | None = None
    controls_removed: int = 0  # control characters taken out of the text (a NUL would break every later reader)


# C0 controls but tab, newline and carriage return, DEL and the C1 controls: never text a person wrote.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def without_controls(text: str) -> tuple[str, int]:
    """TEXT without control characters, and how many there were."""
    cleaned, count = _CONTROLS.subn("", text)
    return cleaned, count


NOT_ANSWERED = "prompt not answered"  # the ledger's reason for a record whose prompt failed alone (its detail: why)


def failed(error: str, prompt_tokens: int = 0) -> Completion:
    """The completion of a prompt that could not be answered."""
    return Completion("", "error", prompt_tokens, 0, error=error)


def context_length(model: Model) -> int | None:
    """Tokens the model can attend to (prompt + completion): its config's positions, else the tokenizer's limit."""
    config = model.model.config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(model.tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**9 else None  # tokenizers say 1e30 for "unknown"




class Generates(ABC):
    """`generate` for every backend (a local Model, a server, replicas): the texts of its `complete`."""

    @abstractmethod
    def complete(self, prompts: list[str], params: GenerationParams | None = None) -> list[Completion]:
        """One completion per prompt, in the same order (each backend answers it its own way)."""

    def generate(self, prompts: list[str], params: GenerationParams | None = None) -> list[str]:
        """Completion texts for `prompts`, in the same order."""
        return [c.text for c in self.complete(prompts, params)]


@dataclass
class Model(Generates):
    """A loaded causal LM and its tokenizer; `generate` is the batch protocol every stage uses."""

    name: str
    model: Any
    tokenizer: Any
    device: str
    quant: Quant
    quantized_layers: int
    adapter: str | None = None  # a LoRA adapter folder applied on top (peft)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    backend = "transformers"

    def __post_init__(self) -> None:
        self.usage: Counter = Counter()  # prompt_tokens, completion_tokens, requests

    def complete(self, prompts: list[str], params: GenerationParams | None = None) -> list[Completion]:
        """Completions for `prompts`, in the same order; batches are sorted by length to cut padding."""
        import torch

        params = params or GenerationParams()
        results: list[Completion | None] = [None] * len(prompts)
        # A prompt that does not fit the model's context (with room for the answer) is answered by an error for
        # its record alone: generated anyway it is garbage, or an allocation of hundreds of GB that ends the run.
        context = context_length(self)
        if context is not None and prompts:
            lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
            for i, n in enumerate(lengths):
                if n + params.max_new_tokens > context:
                    results[i] = failed(f"prompt of {n:,} tokens: with max_new_tokens {params.max_new_tokens:,} more "
                                        f"than the model's context of {context:,}", n)
        order = sorted((i for i in range(len(prompts)) if results[i] is None), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), params.batch_size):
            batch = order[start:start + params.batch_size]
            enc = self.tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.model.device)
            torch.manual_seed(params.seed + start)
            with torch.inference_mode():
                out = self.model.generate(**enc, **self._generate_kwargs(params))
            new = out[:, enc["input_ids"].shape[1]:]
            if new.shape[1] == 0:
                # Some generation paths (e.g. continuous batching on Falcon) fail quietly with no tokens.
                raise ModelLoadError(f"{self.name}: generate returned no new tokens")
            for row, i in enumerate(batch):
                results[i] = self._completion(new[row], int(enc["attention_mask"][row].sum()), params)
        return results  # type: ignore[return-value]

    def _generate_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"do_sample": params.temperature > 0, "max_new_tokens": params.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id,
                                  "eos_token_id": self.tokenizer.eos_token_id}
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)  # stop early, save compute
        return kwargs

    def _completion(self, tokens, prompt_tokens: int, params: GenerationParams) -> Completion:
        ids = tokens.tolist()
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        ended = eos in ids
        if ended:
            ids = ids[: ids.index(eos) + 1]
        elif pad is not None and pad != eos:
            ids = [t for t in ids if t != pad]  # rows that stopped early are padded to the batch's length
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = cut_at_stop(text, params.stop)
        reason = "stop" if ended or len(cut) < len(text) or len(ids) < params.max_new_tokens else "length"
        self.usage.update(prompt_tokens=prompt_tokens, completion_tokens=len(ids), requests=1)
        cut, removed = without_controls(cut)
        return Completion(cut, reason, prompt_tokens, len(ids), controls_removed=removed)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Text before the earliest stop string."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer of a hub id or local folder."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _load_error(name, e) from e


def get_model(name: str, *, quant: Quant = "none", dtype: str = "auto", device: str = "auto",
              trust_remote_code: bool = False, adapter: str | None = None) -> Model:
    """Load a causal LM + tokenizer from a hub id or local folder; quantization is verified, never trusted.

    `adapter`: a peft (LoRA) adapter folder put on top of the base, unmerged (the way it was trained, 8-bit too).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _load_error(name, e) from e
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter}: not a peft adapter folder (no adapter_config.json)")
    # The adapter's folder holds the tokenizer it was trained with, when finetune saved one there.
    has_tokenizer = adapter and (Path(adapter) / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(adapter if has_tokenizer else name, trust_remote_code)
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # falcon-7b ships no pad token
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if quant != "none":
        kwargs["quantization_config"] = _quantization_config(quant, torch_dtype)
        kwargs["device_map"] = {"": 0} if device == "cuda" else {"": device}
    try:
        with linear_subclasses_as_linear(config.model_type if quant != "none" else None):
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except ImportError as e:
        raise ModelLoadError(f"{name}: {quant} loading needs bitsandbytes ({e})",
                             hint="pip install bitsandbytes") from e
    except (OSError, ValueError, RuntimeError) as e:
        raise _load_error(name, e) from e
    if quant == "none":
        model.to(device)
    layers = verify_quantization(model, quant, name)
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ModelLoadError(f"{adapter}: cannot load the adapter onto {name} ({type(e).__name__}: {first})",
                                 hint="was it trained on this base model?") from e
    model.eval()
    return Model(name=name, model=model, tokenizer=tokenizer, device=device, quant=quant, quantized_layers=layers,
                 adapter=adapter)

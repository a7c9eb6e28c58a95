"""Where LoRA finetuning memory goes: each component measured beside the preflight's estimate of it.

Model: Falcon at falcon-7b's widths (hidden 4,544, 71 heads with one shared key/value head, MLP 18,176, vocabulary
65,024) with random weights and `--layers` decoder layers (32 is falcon-7b), LoRA r=16 on its four linears, the
training step of `pipelines.finetune.step` (loss only at labelled positions, chunked; gradient checkpointing),
rows packed from examples of the Dolly-like length mix (a third of each example is prompt). Components:

- weights: the model as loaded (bf16; `--quant 8bit` on CUDA: Linear8bitLt + `prepare_model_for_kbit_training`);
- LoRA, gradients, optimizer: adapters, their gradients and AdamW's two moments, after one optimizer step;
- checkpointed activations: what the forward keeps (each layer's input at its checkpoint);
- one recomputed layer: the backward's own peak on top of that (a layer's forward redone, its gradients);
- logits and loss: the head and cross-entropy over the labelled positions, alone (peak of forward + backward);
- total: the peak of one whole training step (forward, loss, backward, optimizer step) over the process before the
  model was built — the figure the estimate must match.

Measured with the allocator's statistics on CUDA, and on the CPU with the kernel's peak resident set (VmHWM,
reset through /proc/self/clear_refs between phases; glibc made to return every block of 64 KiB or more at once,
so that resident memory follows the live tensors). The last line: `estimate E GiB measured M GiB ratio R`.

    .venv/bin/python bench/finetune_memory.py --device cpu --layers 2           # ~2 minutes on 2 cores (bf16)
    .venv/bin/python bench/finetune_memory.py --device cpu --dtype float32      # a CPU without bf16 instructions

A CPU without AVX-512 BF16 or AMX emulates bf16 matmuls (measured on a 2-core AVX2 EPYC: one layer at 256 tokens
had not finished after 10 minutes): `--dtype float32` measures the fp32 layout the CPU trains in instead, against
the estimate at 4 bytes a value.
    python bench/finetune_memory.py --device cuda --layers 32 --quant 8bit      # the GPU machine
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # before torch allocates anything: big blocks mmapped, freed at once
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
GIB = 1024 ** 3


class Meter:
    """Current and peak memory of this process's tensors (CUDA) or of the process (CPU), peak resettable."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def sync(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()

    def now(self) -> float:
        self.sync()
        if self.cuda:
            return torch.cuda.memory_allocated() / GIB
        return self._status("VmRSS")

    def reset(self) -> float:
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        return self.now()

    def peak(self) -> float:
        self.sync()
        return torch.cuda.max_memory_allocated() / GIB if self.cuda else self._status("VmHWM")

    @staticmethod
    def _status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / GIB
        raise RuntimeError(f"no {field} in /proc/self/status")


def build(layers: int, quant: str, device: str, dtype, upcast: bool = False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, FalconConfig

    from pipelines.finetune import LORA_TARGETS
    from pipelines.finetune.step import checkpointing_kwargs, prepare_quantized
    from workbench.core.models import linear_subclasses_as_linear

    config = FalconConfig(num_hidden_layers=layers)  # falcon-7b's widths
    torch.manual_seed(0)
    with torch.device(device), linear_subclasses_as_linear("falcon"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if quant == "8bit" and device.startswith("cuda"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from finetune_gpu import quantize_8bit

        model = quantize_8bit(model).to(device)
    elif quant == "8bit":  # the CPU: bitsandbytes quantizes while transformers loads, as get_model does
        import tempfile

        from workbench.core.models import _quantization_config

        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            del model
            gc.collect()
            with linear_subclasses_as_linear("falcon"):
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map={"": device},
                                                             quantization_config=_quantization_config("8bit", dtype))
            # Loaded tensors may still be views of the (deleted) file's mapping, whose pages the resident set counts
            # only once touched: copies in ordinary memory, so that what is resident is what the model holds.
            for parameter in model.parameters():
                if parameter.dtype != torch.int8:  # int8 weights were made in memory by quantizing
                    parameter.data = parameter.data.clone()
    if quant == "8bit":
        model = prepare_quantized(model, True, keep_dtype=not upcast)
    else:
        model.enable_input_require_grads()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs())
    model.config.use_cache = False
    return model, lambda m: get_peft_model(m, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                         task_type="CAUSAL_LM", target_modules=LORA_TARGETS["falcon"]))


def batch_of(rows: int, length: int, vocab: int, device: str) -> dict:
    """`rows` packed rows of `length` tokens from the bench's synthetic Dolly-like examples."""
    from finetune_gpu import synthetic_examples

    from pipelines.finetune import PackedCollator, pack

    examples = synthetic_examples(max(200, rows * length // 50), vocab, min(length, 1024))
    packed = [r for r in pack(examples, length, 0) if len(r["input_ids"]) >= length - 64][:rows]
    if len(packed) < rows:
        raise SystemExit(f"could not pack {rows} full rows of {length}")
    batch = PackedCollator(0)(packed)
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def trainer_steps(model, batch: dict, args, device: str, meter: Meter) -> float:
    """The peak of 3 steps of `pipelines.finetune.step.PassTrainer` on the batch's rows, over the model as it is
    (its own AdamW moments included): what the Trainer adds to the plain step, if anything."""
    import tempfile

    from transformers import TrainingArguments

    from pipelines.finetune import PackedCollator
    from pipelines.finetune.step import PassTrainer

    rows = [{k: batch[k][i].tolist() for k in ("input_ids", "labels", "position_ids")}
            for i in range(batch["input_ids"].shape[0])]
    with tempfile.TemporaryDirectory() as folder:
        training = TrainingArguments(output_dir=folder, per_device_train_batch_size=len(rows), max_steps=3,
                                     save_strategy="no", report_to=[], logging_steps=1, disable_tqdm=True,
                                     remove_unused_columns=False, use_cpu=not device.startswith("cuda"),
                                     bf16=device.startswith("cuda") or args.quant == "8bit", optim="adamw_torch")
        trainer = PassTrainer(model=model, args=training, train_dataset=rows * 3, data_collator=PackedCollator(0),
                              rows_per_pass=len(rows))
        start = meter.reset()
        trainer.train()
        peak = meter.peak() - start
        del trainer
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                        help="the weights' and compute dtype (float32: CPUs without bf16 instructions)")
    parser.add_argument("--rows", type=int, default=1, help="packed rows per pass")
    parser.add_argument("--length", type=int, default=1024, help="tokens per packed row")
    parser.add_argument("--quant", default="none", choices=["none", "8bit"])
    parser.add_argument("--upcast", action="store_true", help="8-bit: peft's prepare_model_for_kbit_training "
                        "as it is (every parameter that is not int8 cast to fp32), to compare")
    parser.add_argument("--trainer", action="store_true", help="also 3 steps through the product's Trainer")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    from transformers import FalconConfig

    from pipelines.finetune import FinetuneConfig
    from pipelines.finetune.memory import estimate_memory
    from pipelines.finetune.step import ExpandedKeyValueHeads, head_loss, labelled_loss

    device, dtype = args.device, getattr(torch, args.dtype)
    torch.set_num_threads(os.cpu_count() or 1)
    meter = Meter(device)
    started = time.perf_counter()
    batch = batch_of(args.rows, args.length, FalconConfig().vocab_size, device)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    measured: dict[str, float] = {}

    origin = meter.reset()
    model, add_lora = build(args.layers, args.quant, device, dtype, args.upcast)
    built = meter.now()
    measured["weights"] = built - origin
    model = add_lora(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]

    def autocast():  # bf16 compute as the Trainer's on a GPU (8-bit: over the fp32 norms and embedding)
        return torch.autocast(device.split(":")[0], dtype=dtype, enabled=device.startswith("cuda") or
                              args.quant == "8bit")

    optimizer = torch.optim.AdamW(params, lr=1e-5)

    def step():
        with ExpandedKeyValueHeads(), autocast():
            total, count = labelled_loss(model, batch)
        grads = torch.autograd.grad(total / count, params)
        for p, g in zip(params, grads):
            p.grad = g
        del grads, total
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # The whole step, twice: the first allocates AdamW's moments, the second is every later step.
    step()
    measured["LoRA, gradients, optimizer"] = meter.now() - built
    resident = meter.reset()
    step()
    step_peak = meter.peak() - resident
    # The forward alone: what the checkpoints keep until backward.
    inner = model.get_base_model()
    inputs = {k: batch[k] for k in ("input_ids", "position_ids")}
    start = meter.reset()
    with ExpandedKeyValueHeads(), autocast():
        hidden = inner.base_model(**inputs, use_cache=False).last_hidden_state
    measured["checkpointed activations"] = meter.now() - start
    after_forward = meter.reset()
    grads = torch.autograd.grad(hidden.float().square().mean(), params)
    measured["one recomputed layer"] = meter.peak() - after_forward
    del hidden, grads
    # The head and loss alone, on a leaf standing for the decoder's output.
    # The decoder's output is in the residual stream's dtype: fp32 with --upcast (the embedding is fp32 then).
    residual = torch.float32 if args.upcast else dtype
    leaf = torch.randn(*batch["input_ids"].shape, inner.config.hidden_size, dtype=residual, device=device,
                       requires_grad=True)
    start = meter.reset()
    with autocast():
        total, _ = head_loss(leaf, batch["labels"], inner.get_output_embeddings())
    total.backward()
    measured["logits and loss"] = meter.peak() - start
    del leaf, total
    trainer_peak = None
    if args.trainer:  # the product's path: PassTrainer (transformers' Trainer) over the same batch, 3 steps
        del optimizer
        params[0].grad = None
        trainer_peak = trainer_steps(model, batch, args, device, meter)

    layout = FinetuneConfig(batch_size=args.rows, max_length=args.length, quant=args.quant, packing=True,
                            kbit_fp32=args.upcast)
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        shapes = AutoModelForCausalLM.from_config(FalconConfig(num_hidden_layers=args.layers))
    estimate = estimate_memory(FalconConfig(num_hidden_layers=args.layers), shapes, layout, args.quant, device,
                               dtype_bytes=dtype.itemsize, labelled_share=labelled / (args.rows * args.length))
    measured_total = (resident - origin) + step_peak  # weights, adapters and optimizer, then a step's peak
    # On a GPU the allocator's statistics leave out the CUDA context: so does the estimate compared with them.
    compared = estimate.total_gib - (estimate.parts["runtime"] if device.startswith("cuda") else 0)
    print(f"device {device}; torch {torch.__version__}; Falcon at falcon-7b widths, {args.layers} layers, "
          f"{args.dtype}, quant {args.quant}; {args.rows} packed row(s) of {args.length} tokens, {labelled} labelled; "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'component':<30}{'estimate GiB':>14}{'measured GiB':>14}")
    for name, value in estimate.parts.items():
        shown = f"{measured[name]:>14.3f}" if name in measured else f"{'-':>14}"
        print(f"{name:<30}{value:>14.3f}{shown}")
    print(f"{'(a step peak over them)':<30}{estimate.step_gib:>14.3f}{step_peak:>14.3f}")
    if trainer_peak is not None:
        print(f"{'(through the Trainer)':<30}{'':>14}{trainer_peak:>14.3f}  (3 steps' peak over the model, its "
              f"AdamW moments included; the plain step's: {step_peak:.3f})")
    print(f"estimate {compared:.2f} GiB measured {measured_total:.2f} GiB ratio {compared / measured_total:.2f}")


if __name__ == "__main__":
    main()

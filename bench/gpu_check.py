"""The product path on a GPU: a tiny Falcon loaded by `get_model(quant="8bit")` on CUDA must really hold
Linear8bitLt layers, compute nearly the same function as bf16, and `pipelines.finetune.finetune` must train an
adapter on it (loss going down). Run on the device machine before `bench/finetune_gpu.py`:
    python bench/gpu_check.py /tmp/gpu-check
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(work: Path) -> None:
    from pipelines.finetune import FinetuneConfig, train
    from workbench.core.models import count_quantized_layers, get_model
    from workbench.core.records import Record
    from workbench.core.tiny import TinySpec, build_tiny_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = build_tiny_model(work / "falcon", TinySpec(arch="falcon"))
    bf16 = get_model(str(base), quant="none", device=device)
    int8 = get_model(str(base), quant="8bit", device=device)
    layers = count_quantized_layers(int8.model)
    ids = bf16.tokenizer("Do I have to know programming to apply?", return_tensors="pt").input_ids
    with torch.inference_mode():
        a = bf16.model(ids.to(bf16.model.device)).logits.float()
        b = int8.model(ids.to(int8.model.device)).logits.float()
    drift = float((a - b).abs().max() / a.abs().max())
    print(f"device {device}; 8-bit layers {layers}; max logit drift vs unquantized {drift:.3%}")
    assert layers["8bit"] > 0 and drift < 0.1
    del bf16, int8

    records = [Record(instruction=f"Question {i}: what does module {i} teach?", context="",
                      response=f"Module {i} teaches topic {i % 7} with weekly labs.", category="open_qa")
               for i in range(64)]
    start = time.perf_counter()
    result = train(str(base), records, work / "adapter",
                   FinetuneConfig(quant="8bit" if device == "cuda" else "none", epochs=3, max_length=128,
                                  batch_size=4, lr=1e-3, logging_steps=2), device=device)
    losses = [p["loss"] for p in result.manifest["train_loss"]]
    print(f"finetune {time.perf_counter() - start:.1f}s; quant {result.manifest['quant']}; "
          f"8-bit layers {result.manifest.get('quantized_layers')}; loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
          f"peak {result.manifest.get('peak_memory_gib')} GiB")
    assert losses[-1] < losses[0]
    print(json.dumps({k: result.manifest[k] for k in ("quant", "device", "useful_tokens_per_s", "steps")}))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu-check"))

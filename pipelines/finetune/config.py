"""What a LoRA finetune is asked to do: its settings, the layers LoRA adapts, and the precision it trains in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

IGNORE = -100  # label of tokens that carry no loss (the prompt, padding)

# LoRA targets per architecture. Falcon: all four linears — measured: with 8-bit layers, LoRA on only
# query_key_value + dense fails with an in-place-view error in the residual add; all four train.
LORA_TARGETS = {
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # sft: records (instruction, context, response); dpo: preference pairs (prompt, chosen, rejected), trl's DPO
    method: Literal["sft", "dpo"] = "sft"
    beta: float = Field(0.1, gt=0)  # dpo: how far the policy may move from the reference (trl's beta)
    quant: Literal["auto", "none", "8bit", "4bit"] = "auto"  # auto: 8bit on CUDA, none on the CPU
    epochs: float = Field(3.0, gt=0)
    lr: float = Field(2e-4, gt=0)
    rank: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    max_length: int = Field(1024, ge=16)  # longer examples are dropped and reported, never cut mid-response
    packing: bool = True
    batch_size: int = Field(8, ge=1)  # packed: rows of max_length tokens per step; else examples per step
    grad_accum: int = Field(1, ge=1)
    grad_checkpointing: bool = True
    # 8/4-bit: cast every parameter that is not quantized to fp32, as peft's prepare_model_for_kbit_training does
    # (embedding, norms, head; more memory). Off: they stay in the compute dtype (bf16), unless the GPU lacks bf16.
    kbit_fp32: bool = False
    save_steps: int = Field(200, ge=1)
    eval_split: float = Field(0.05, ge=0, lt=1)
    seed: int = 42  # the split, the data order and LoRA's initialisation
    system_prompt: bool = False  # the course-advisor system prompt in every example
    chat_template: Literal["auto", "never"] = "auto"  # auto: the tokenizer's chat template when it has one
    max_steps: int = -1  # stop after this many optimizer steps (-1: the epochs decide)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    logging_steps: int = Field(10, ge=1)
    # Evaluation while training: the suite's generation metrics at every checkpoint (pipelines.finetune.suite_eval).
    eval_suite: str | None = None
    eval_every: int | None = Field(None, ge=1)  # steps between evaluated checkpoints (default: save_steps)
    eval_limit: int | None = Field(None, ge=1)  # the suite's first items only, for speed
    keep_best: str | None = None  # a suite metric: the checkpoint best by it becomes the adapter

    @model_validator(mode="after")
    def _keep_best_needs_a_suite(self) -> FinetuneConfig:
        if self.keep_best and not self.eval_suite:
            raise ValueError("--keep-best needs --eval-suite: the metric comes from the suite")
        for name, value in (("--eval-every", self.eval_every), ("--eval-limit", self.eval_limit)):
            if value is not None and not self.eval_suite:
                raise ValueError(f"{name} needs --eval-suite: without a suite no checkpoint is evaluated")
        if self.method == "dpo" and self.system_prompt:
            raise ValueError("--system-prompt with --method dpo: the pairs' prompts are already built; build them "
                             "with the system prompt (`data export --format dpo --system-prompt`)")
        return self


# Fields that change speed or memory but not what is learned (they stay out of a run's fingerprint).
SPEED_ONLY = frozenset({"save_steps", "logging_steps", "eval_suite", "eval_every", "eval_limit"})


def resolve_quant(config: FinetuneConfig, device: str) -> str:
    if config.quant != "auto":
        return config.quant
    return "8bit" if device.startswith("cuda") else "none"


def lora_targets(model) -> list[str]:
    """The module names LoRA adapts for this architecture (every linear but the output head when unknown)."""
    import torch

    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__.startswith("Linear"):
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in ("lm_head", "embed_out", "score"):
                names.add(leaf)
    return sorted(names)

"""The training step: the loss computed only where a label is, in passes of a few rows that fit the memory budget,
the rows per pass halved when a pass still runs out of memory.

Why not the model's own loss: a causal LM computes logits for every position, and its loss keeps several fp32
copies of them (logits, log-softmax, their gradients). At falcon-7b's vocabulary (65,024) that is 254 MiB per
1,024 tokens per copy, while a prompt carries no label (a third to a half of the tokens of instruction data). Here
the decoder's last hidden states are gathered at the labelled positions and the head and cross-entropy run over
chunks of `LOSS_CHUNK` of them, each chunk recomputed in backward, so at most one chunk's logits exist at a time.

Why passes: a step's rows (`--batch-size`) are split into passes of `rows_per_pass` rows, each pass's gradient
summed into the step's (the loss of every pass divided by the step's label count, as transformers' Trainer does
over gradient accumulation): the update is the unconstrained step's, only the peak memory is lower. A pass's
gradients are taken with `torch.autograd.grad` and added to the step's only when the pass finished, so a pass that
runs out of memory leaves nothing half-added and the step is redone with half the rows per pass.

Why an all-reduce of its own: under several processes (DDP) the gradients are averaged by hooks that fire when
backward accumulates into `.grad`; `torch.autograd.grad` fires none. So the passes run on the unwrapped model and,
at the last micro-batch of a step, the step's gradients are summed over the processes here: each process divided
its loss by the label count of the whole step over all processes (the Trainer gathers it), so the sum is the
gradient of one process given every row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.checkpoint import checkpoint
from transformers import Trainer, TrainerCallback

from pipelines.finetune.config import IGNORE
from pipelines.finetune.memory import LOSS_CHUNK, halved
from workbench.core.models import release_memory

# Architectures whose logits are the output embedding of the decoder's last hidden state, nothing after it
# (no soft-capping or scaling): for these the loss is computed here; any other uses the model's own.
LEAN_TYPES = frozenset({"falcon", "llama", "mistral", "gpt_neox", "qwen2"})


def _chunk_loss(hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def labelled_loss(model, batch: dict) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy over the positions that carry a label, how many) for a causal LM or a PeftModel."""
    model = getattr(model, "module", model)  # as the Trainer may have wrapped it (DataParallel, DDP)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = batch["labels"]
    if inner.config.model_type not in LEAN_TYPES:
        count = int((labels[..., 1:] != IGNORE).sum())
        output = inner(**{k: v for k, v in batch.items() if k != "labels"}, labels=labels,
                       num_items_in_batch=max(count, 1))
        return output.loss * count, count
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
    hidden = inner.base_model(**inputs, use_cache=False).last_hidden_state
    return head_loss(hidden, labels, inner.get_output_embeddings())


def head_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module) -> tuple[torch.Tensor, int]:
    """The output head and cross-entropy at the labelled positions of (rows, length, hidden) states, by chunks."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    hidden, targets = hidden[:, :-1][keep], targets[keep]  # (N, hidden), (N,): the labelled positions only
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), LOSS_CHUNK):
        part = slice(start, start + LOSS_CHUNK)
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, hidden[part], targets[part], head, use_reentrant=False)
        else:
            total = total + _chunk_loss(hidden[part], targets[part], head)
    return total, targets.numel()


class ExpandedKeyValueHeads(TorchFunctionMode):
    """Scaled-dot-product attention given fewer key/value heads than query heads (falcon-7b: one shared by 71) is
    broadcast by torch's math path, which materialises every score of every head and keeps them for backward
    (measured on the CPU, one 1,024-token row with a packing mask: 885 MiB forward + backward; with the key and
    value heads expanded, a view, the fused kernel runs: 75 MiB). Active over a pass's forward, and through
    `checkpointing_kwargs` over each checkpointed layer's recomputation in backward."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and len(args) >= 3 and not kwargs.get("enable_gqa"):
            query, key, value = args[:3]
            heads, groups = query.shape[-3], key.shape[-3]
            if groups != heads and heads % groups == 0:
                args = (query, _expand_heads(key, heads), _expand_heads(value, heads), *args[3:])
        return func(*args, **kwargs)


def _expand_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, groups, length, dim = x.shape
    if groups == 1:
        return x.expand(batch, heads, length, dim)
    return x[:, :, None].expand(batch, groups, heads // groups, length, dim).reshape(batch, heads, length, dim)


def checkpointing_kwargs() -> dict:
    """For `gradient_checkpointing_enable`: non-reentrant checkpoints whose forward and recomputation both run
    under ExpandedKeyValueHeads (a mode entered around backward would not reach the recomputation)."""
    return {"use_reentrant": False, "context_fn": _attention_contexts}


def _attention_contexts():
    return ExpandedKeyValueHeads(), ExpandedKeyValueHeads()


def prepare_quantized(model, checkpointing: bool, keep_dtype: bool = True):
    """peft's `prepare_model_for_kbit_training` (every base parameter frozen, checkpointing with inputs that
    require grad) without, by default, its cast of every parameter that is not int8 to fp32. That cast was for fp16
    training; under bf16 autocast the norms compute in fp32 anyway, and the cast made falcon-7b's embedding and
    tied head fp32 (+0.55 GiB), the residual stream fp32 (every checkpoint twice as large), and every call of the
    head under autocast a bf16 copy of its 65,024 x 4,544 weight (0.55 GiB) — bench/RESULTS.md."""
    from peft import prepare_model_for_kbit_training

    if not keep_dtype:
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                               gradient_checkpointing_kwargs=checkpointing_kwargs())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if checkpointing:
        model.enable_input_require_grads()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs())
    return model


class PassTrainer(Trainer):
    """transformers' Trainer (schedule, checkpoints, resume, logging) with the training step above."""

    def __init__(self, *args, rows_per_pass: int, on_halve=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # so the Trainer counts the labels of a whole accumulated step
        self.rows_per_pass = rows_per_pass
        self.halvings: list[dict] = []  # {"step", "rows_per_pass"}: out-of-memory passes, redone smaller
        self.on_halve = on_halve

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        inputs = self._prepare_inputs(inputs)
        labels = inputs["labels"]
        count = num_items_in_batch if num_items_in_batch is not None else (labels[..., 1:] != IGNORE).sum()
        count = max(float(count), 1.0)
        while True:
            try:
                return self._passes(model, inputs, count)
            except torch.OutOfMemoryError:
                if self.rows_per_pass == 1:
                    raise
                release_memory()
                self.rows_per_pass = halved(self.rows_per_pass)
                self.halvings.append({"step": self.state.global_step + 1, "rows_per_pass": self.rows_per_pass})
                if self.on_halve:
                    self.on_halve(self.halvings[-1])

    def _parts(self, inputs: dict):
        """The batch in passes of rows_per_pass rows (the non-tensor entries, such as use_cache, in each)."""
        for start in range(0, inputs["input_ids"].shape[0], self.rows_per_pass):
            yield {k: v[start:start + self.rows_per_pass] if torch.is_tensor(v) else v for k, v in inputs.items()}

    def _passes(self, model, inputs: dict, count: float) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        summed: list[torch.Tensor] | None = None
        loss = 0.0
        for part in self._parts(inputs):
            with ExpandedKeyValueHeads(), torch.autocast(self.args.device.type, dtype=torch.bfloat16,
                                                         enabled=self.args.bf16):
                total, _ = labelled_loss(model, part)
            scaled = total / count
            grads = torch.autograd.grad(scaled, params, allow_unused=True)
            grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
            summed = grads if summed is None else [s.add_(g) for s, g in zip(summed, grads)]
            loss += float(scaled.detach())
            del total, scaled, grads
        for p, g in zip(params, summed or []):
            p.grad = g if p.grad is None else p.grad.add_(g)
        processes = self.args.world_size
        if processes > 1 and self.accelerator.sync_gradients:
            _sum_over_processes([p.grad for p in params if p.grad is not None])
        # The Trainer logs the mean over processes of what this returns: times the processes, the step's loss.
        return torch.tensor(loss * processes, device=self.args.device)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Evaluation through the same lean loss: the model's own would hold every position's logits at once.
        inputs = self._prepare_inputs(inputs)
        total, count = 0.0, 0
        with torch.no_grad(), ExpandedKeyValueHeads():
            for part in self._parts(inputs):
                with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
                    summed, n = labelled_loss(model, part)
                total, count = total + float(summed), count + n
        return torch.tensor(total / max(count, 1), device=self.args.device), None, None


def _sum_over_processes(grads: list[torch.Tensor]) -> None:
    """Each gradient replaced by its sum over the processes, in one all-reduce of one flat buffer."""
    import torch.distributed as dist

    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


class Progress(TrainerCallback):
    """The step count to `progress`, and a logged loss at the last step whatever logging_steps says."""

    def __init__(self, progress=None):
        self.progress = progress

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == state.max_steps:
            control.should_log = True
        if self.progress:
            self.progress(state.global_step, state.max_steps)


def train_quietly(trainer, resume_from: str | None):
    """trainer.train, without transformers' own printing (a dict per logged step, tqdm bars: the manifest keeps
    the logs, and the caller's Progress shows the steps) or the deprecation warnings its Trainer and trl raise
    about names transformers v6 renames."""
    import warnings

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will be removed in v6", category=FutureWarning)
        return trainer.train(resume_from_checkpoint=resume_from)

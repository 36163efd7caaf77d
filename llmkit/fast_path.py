"""What the recipe's `auto` settings mean on this machine: the GPU fast path.

On a CUDA GPU, `train.precision: auto` trains in bf16 (fp32 master weights, bf16 autocast)
where the GPU has bf16 units, and `train.compile: auto` compiles the model with
torch.compile; TF32 matmuls are allowed for what stays in fp32. On a CPU both stay off: on
this project's AMX machines bf16 autocast trained small models ~10% slower than fp32 (its
faster matrix products do not pay for slower CPU attention and the casts), and compilation
did not repay its start-up time in short CPU runs (docs/fast-paths.md).
`train.chunked_loss: auto` computes the output layer and the loss in chunks (fused_loss.py)
on CPUs, where it measured 1.4× (GPT-2) and 2.3× (BERT) faster per step; GPUs have Liger's
fused kernels for that (`train.liger`). The rest needs no switch: attention is PyTorch SDPA
(flash kernels on GPUs), AdamW is the fused implementation, GPT-2's GELU runs as one kernel,
and pretraining blocks are packed with no padding.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.activations import ACT2FN, NewGELUActivation

from llmkit.console import note
from llmkit.errors import UserError
from llmkit.fused_loss import use_chunked_loss
from llmkit.recipe import TrainConfig


def has_cuda() -> bool:
    return torch.cuda.is_available()


def has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return has_cuda() or bool(mps and mps.is_available())


def cuda_has_bf16() -> bool:
    return has_cuda() and torch.cuda.is_bf16_supported()


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class FastPath:
    precision: str  # fp32 | bf16 | fp16
    compile: bool
    liger: bool
    tf32: bool


def launcher_precision() -> str | None:
    """The mixed precision an `accelerate launch` config or flag chose ("no" is its default,
    not a choice)."""
    chosen = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    return chosen if chosen in ("bf16", "fp16") else None


def resolve_precision(precision: str, setting: str = "train.precision") -> str:
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'", f"use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return launcher_precision() or ("bf16" if cuda_has_bf16() else "fp32")
    if precision == "fp16" and not has_cuda():
        raise UserError(f"{setting} fp16 needs a CUDA GPU", "use bf16 or fp32 on this machine")
    return precision


def resolve_fast_path(train: TrainConfig) -> FastPath:
    """The settings a run will use: the recipe's, with every `auto` decided for this machine."""
    if train.liger and not (has_cuda() and importlib.util.find_spec("liger_kernel")):
        raise UserError(
            "train.liger needs a CUDA GPU and the liger-kernel package",
            "pip install liger-kernel on the GPU machine, or set train.liger false",
        )
    launched = launcher_precision()
    if launched and train.precision not in ("auto", launched):
        # Trainer would quietly follow the launcher; a recipe's explicit choice must not lose.
        raise UserError(
            f"accelerate launch asks for mixed precision {launched}, the recipe for "
            f"train.precision {train.precision}",
            "make them agree: set train.precision auto, or change the launch config's "
            "mixed_precision",
        )
    return FastPath(
        precision=resolve_precision(train.precision),
        compile=has_cuda() if train.compile == "auto" else bool(train.compile),
        liger=train.liger,
        tf32=has_cuda() and torch.cuda.get_device_capability()[0] >= 8,
    )


def use_fused_activations(model: PreTrainedModel) -> int:
    """Swap GPT-2's "gelu_new" (tanh-approximated GELU written as five tensor operations) for
    PyTorch's one-kernel version of the same function. Only the modules change, not the config
    or the weights, so a saved model is what it would have been. Returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, ACT2FN["gelu_pytorch_tanh"])
                swapped += 1
    return swapped


def prepare_for_training(model: PreTrainedModel, train: TrainConfig) -> dict[str, bool]:
    """The fast path's changes to the model itself; returns what was done, for metrics.json."""
    use_fused_activations(model)
    chunked = not has_cuda() if train.chunked_loss == "auto" else train.chunked_loss
    return {"chunked_loss": bool(chunked) and use_chunked_loss(model)}


def check_attention(attention: str) -> None:
    installed = importlib.util.find_spec("flash_attn") is not None
    if attention == "flash_attention_2" and not (has_cuda() and installed):
        raise UserError(
            "model.attention flash_attention_2 needs a CUDA GPU and the flash-attn package",
            "use model.attention sdpa (PyTorch's own flash kernels), or pip install flash-attn",
        )


def note_sharding_fallback() -> None:
    """accelerate shards (FSDP) only on accelerators; on CPUs it trains plain data parallel."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not has_accelerator():
        note("FSDP needs GPUs: on this CPU-only machine accelerate trains plain data parallel")

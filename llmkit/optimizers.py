"""The optimizer a recipe asks for (`train.optimizer`), for the Trainer.

`adamw`: Trainer's own fused AdamW (nothing here). `muon`: torch.optim.Muon for the hidden
layers' 2-D weight matrices and torch.optim.AdamW for everything Muon must not take, held
as one optimizer so that the Trainer's learning-rate schedule, gradient clipping,
checkpoints and resume treat it like any other.

Which parameters Muon takes (`muon_takes`) is one rule for every family: a 2-D weight of a
hidden layer. Not embeddings (token, position, token-type), not the output layer (the LM
head, whether tied or not, and task heads: classifier, score, qa_outputs, the NSP head), not
norms or biases (1-D), not scalars. Muon orthogonalises a weight's update as a matrix;
an embedding is a lookup table and an output layer scores a vocabulary, which the published
recipes keep on AdamW.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from llmkit.errors import UserError
from llmkit.recipe import TrainConfig

# Parameters of modules with these names score outputs (a task's labels, next-sentence
# prediction), not hidden features: AdamW's, as the LM head is.
OUTPUT_MODULES = ("lm_head", "classifier", "score", "qa_outputs", "seq_relationship", "decoder")


def muon_takes(model: nn.Module) -> dict[str, bool]:
    """{parameter name: taken by Muon} for every trainable parameter of `model`."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    excluded: set[int] = set()
    for name, module in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Embedding) or module is output or last in OUTPUT_MODULES:
            excluded.update(id(p) for p in module.parameters(recurse=False))
    return {
        name: param.ndim == 2 and id(param) not in excluded
        for name, param in model.named_parameters()
        if param.requires_grad
    }


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon and torch.optim.AdamW as one optimizer.

    Its param_groups are the two optimizers' own group dicts (Muon's first), so the Trainer's
    scheduler sets each group's learning rate and each optimizer reads it; step, zero_grad
    and the state dict cover both.
    """

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW) -> None:
        self.muon, self.adamw = muon, adamw
        super().__init__([*muon.param_groups, *adamw.param_groups], defaults={})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        # Loading gives each optimizer new group dicts: share those again.
        self.param_groups = [*self.muon.param_groups, *self.adamw.param_groups]


class MuonSplit:
    """What Trainer's `optimizer_cls_and_kwargs` takes for an optimizer that needs the model:
    called with the model and the settings, it returns a MuonWithAdamW."""

    def __call__(self, model: nn.Module, *, train: TrainConfig) -> MuonWithAdamW:
        config, muon = train, train.muon
        takes = muon_takes(model)
        params = dict(model.named_parameters())
        matrices = [params[n] for n, by_muon in takes.items() if by_muon]
        tables = [params[n] for n, by_muon in takes.items() if not by_muon and params[n].ndim >= 2]
        vectors = [params[n] for n, by_muon in takes.items() if not by_muon and params[n].ndim < 2]
        return MuonWithAdamW(
            torch.optim.Muon(
                matrices,
                lr=muon.lr or config.lr,
                momentum=muon.momentum,
                nesterov=muon.nesterov,
                weight_decay=config.weight_decay
                if muon.weight_decay is None
                else muon.weight_decay,
                ns_steps=muon.ns_steps,
                adjust_lr_fn=muon.adjust_lr,
            ),
            torch.optim.AdamW(
                [
                    {"params": tables, "weight_decay": config.weight_decay},
                    {"params": vectors, "weight_decay": 0.0},  # biases and norms, as Trainer does
                ],
                lr=config.lr,
            ),
        )


def check_optimizer_launch(train: TrainConfig) -> None:
    """Muon orthogonalises whole weight matrices; FSDP and DeepSpeed flatten and shard them
    (accelerate says which it launched through these variables)."""
    if train.optimizer != "muon":
        return
    for variable, engine in (
        ("ACCELERATE_USE_FSDP", "FSDP"),
        ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"),
    ):
        if os.environ.get(variable, "").lower() == "true":
            raise UserError(
                f"train.optimizer muon needs whole weight matrices, and {engine} shards them",
                "use train.optimizer=adamw with this launch config, or launch plain data "
                "parallel (torchrun, or accelerate without an FSDP/DeepSpeed config)",
            )


def optimizer_choice(train: TrainConfig) -> tuple[Any, dict[str, Any]] | None:
    """Trainer's `optimizer_cls_and_kwargs` for the recipe; None: Trainer's own AdamW."""
    if train.optimizer == "adamw":
        return None
    return MuonSplit, {"train": train}

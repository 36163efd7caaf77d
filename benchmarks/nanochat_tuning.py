"""The new causal recipe's open questions, on time_to_quality's text, shape and scoring.

time_to_quality showed nanochat + Muon + WSD reaching the tuned AdamW baseline's loss in 0.37x
its time, but left three things unmeasured (issue 29): Muon's learning rate on nanochat (it
ran at an untuned 3e-3, and nanochat with AdamW ended lower), a parameter-matched comparison
(nanochat unties its embeddings: 1.44M parameters against gpt2's 0.94M), and zero-initialised
block output projections. Runs, one after another, in one sitting:

- the baseline again (gpt2, AdamW 4e-3, cosine: the rate time_to_quality bracketed as best),
  so that every share below is of a baseline timed alongside;
- nanochat + Muon + WSD at five rates (one rate for both halves: Muon's updates are scaled
  to AdamW's size, `train.muon.adjust_lr: match_rms_adamw`);
- nanochat + AdamW + WSD at the baseline's rate (what Muon adds to the family);
- tied embeddings (917,504 parameters, against gpt2's 937,472) at three rates;
- at the untied rate with the lowest final loss: the blocks' output projections
  zero-initialised (a checkpoint made here, trained through `model.path`).

    python -m benchmarks.nanochat_tuning [--steps 800]

Results go into benchmarks/out/nanochat_tuning.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.time_to_quality import NANOCHAT, WSD, common_settings, pretrain, report

BASELINE_LR = "train.lr=0.004"
MUON_LRS = (7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2)
TIED_LRS = (1.5e-3, 3e-3, 6e-3)
MUON = ["train.optimizer=muon", "train.weight_decay=0"]
BASELINE = "baseline gpt2 AdamW 4e-3 cosine"
# The layers that write each nanochat block's result into the residual stream.
BLOCK_OUTPUTS = ("self_attn.o_proj", "mlp.fc2")


def zero_initialised(folder: Path, overrides: list[str]) -> Path:
    """The model the recipe builds (same seed, same weights), its blocks' output projections
    zeroed (modded-nanogpt's and nanochat's init), saved as a checkpoint to start from: the
    ablation runs through `model.path`, with no model option of llmkit's."""
    from transformers import AutoTokenizer

    from llmkit.commands.pretrain import prepare_model
    from llmkit.recipe import load_recipe

    recipe = load_recipe("gpt2-tiny", overrides)
    tokenizer = AutoTokenizer.from_pretrained(recipe.tokenizer.path)
    model = prepare_model(recipe, "clm", False, tokenizer)
    zeroed = [m for name, m in model.named_modules() if name.endswith(BLOCK_OUTPUTS)]
    assert len(zeroed) == 2 * recipe.model.layers, "nanochat's layer names changed"
    with torch.no_grad():
        for module in zeroed:
            module.weight.zero_()
    start = folder / "zero-init-start"
    model.save_pretrained(start)
    tokenizer.save_pretrained(start)
    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=800)
    steps = parser.parse_args().steps
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        common = common_settings(folder)
        runs = {BASELINE: pretrain(folder, "base", [*common, BASELINE_LR], steps)}
        new = [*common, *NANOCHAT, *MUON, *WSD]
        for lr in MUON_LRS:
            runs[f"nanochat Muon {lr:g} WSD"] = pretrain(
                folder, f"muon-{lr:g}", [*new, f"train.lr={lr}"], steps
            )
        runs["nanochat AdamW 4e-3 WSD"] = pretrain(
            folder, "adamw", [*common, *NANOCHAT, *WSD, BASELINE_LR], steps
        )
        for lr in TIED_LRS:
            runs[f"nanochat Muon {lr:g} WSD, tied embeddings"] = pretrain(
                folder, f"tied-{lr:g}", [*new, f"train.lr={lr}", "model.tie_embeddings=true"], steps
            )
        untied = [f"nanochat Muon {lr:g} WSD" for lr in MUON_LRS]
        best = min(untied, key=lambda name: runs[name]["final_loss"])
        best_lr = runs[best]["overrides"][-1]
        start = zero_initialised(folder, [*new, best_lr])
        runs[f"{best}, zero-init projections"] = pretrain(
            folder, "zero", [*new, best_lr, f"model.path={start}"], steps
        )
    report("nanochat_tuning", runs, BASELINE, steps, best_muon=best)


if __name__ == "__main__":
    main()

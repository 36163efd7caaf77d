"""Training throughput and model FLOPs utilisation (MFU) of llmkit's own pretraining path.

Each configuration runs `run_pretrain` (the code behind `llmkit pretrain-clm/-mlm`) on the
built-in WikiText tokens with the recipe's settings and the fast path's defaults (on a GPU:
bf16, torch.compile, SDPA flash attention, fused AdamW, unpadded blocks), and times the steps
after a warm-up (compilation and the first allocations excluded):

    tokens/s = timed steps × batch × grad_accum × processes × seq_len / seconds
    MFU      = tokens/s × FLOPs per token / peak FLOP/s
    FLOPs per token = 6·N + 12·L·H·Q·T   (N parameters, L layers, H heads of width Q, T seq_len)

The peak defaults to 989 TFLOP/s, an H100 SXM's dense bf16 figure; give yours with
--peak-tflops (H100 PCIe 756, A100 312, H200 989). BERT runs without NSP (its head costs
nothing measurable and needs sentence pairs); vocabularies are fixed at the recipes' padded
sizes, so N is the real model's. Runs on a CPU too (slowly), which is how the test suite keeps
it working.

    python benchmarks/gpu_throughput.py                       # gpt2-small@1024, bert-base@128/512
    python benchmarks/gpu_throughput.py --only gpt2-small --steps 100 --set train.batch_size=32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from llmkit.commands.pretrain import run_pretrain  # noqa: E402
from llmkit.console import print_table  # noqa: E402
from llmkit.recipe import load_recipe  # noqa: E402

# (label, recipe, objective, seq_len, overrides): the three configurations.
CONFIGURATIONS = [
    ("gpt2-small@1024", "gpt2-small", "clm", 1024, ["model.vocab_size=50304"]),
    ("bert-base@128", "bert-base", "mlm", 128, ["model.vocab_size=30528", "objective.nsp=false"]),
    ("bert-base@512", "bert-base", "mlm", 512, ["model.vocab_size=30528", "objective.nsp=false"]),
]
H100_SXM_BF16_TFLOPS = 989.0


class StepTimer(TrainerCallback):
    """Wall time and tokens between the end of step `warmup` and the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.started = self.tokens_at_start = None
        self.seconds = self.tokens = 0.0

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # kernels are queued asynchronously; time their end

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self._sync()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self.started, self.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen

    def on_train_end(self, args, state, control, **kwargs):
        self._sync()
        self.seconds = time.perf_counter() - self.started
        self.tokens = state.num_input_tokens_seen - self.tokens_at_start


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(label, recipe_name, objective, seq_len, overrides, args) -> dict:
    recipe = load_recipe(
        recipe_name,
        [
            f"data.seq_len={seq_len}",
            "data.validation_fraction=0",
            f"train.max_steps={args.warmup + args.steps}",
            "train.eval_every=null",
            "train.save_every=null",
            "train.warmup=0",
            f"train.log_every={args.warmup + args.steps}",
            *overrides,
            *args.overrides,
        ],
    )
    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory() as run_dir:
        summary = run_pretrain(recipe, objective, output_dir=Path(run_dir), callbacks=[timer])
    tokens_per_second = timer.tokens / timer.seconds
    flops = summary["flops_per_token"]
    return {
        "configuration": label,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "parameters": summary["parameters"],
        "seq_len": recipe.data.seq_len,
        "global_batch": recipe.train.batch_size * recipe.train.grad_accum * summary["processes"],
        "precision": summary["precision"],
        "compiled": summary["compiled"],
        "timed_steps": args.steps,
        "timed_tokens": timer.tokens,
        "tokens_per_second": round(tokens_per_second),
        "flops_per_token": flops,
        "achieved_tflops": round(tokens_per_second * flops / 1e12, 2),
        "mfu": round(tokens_per_second * flops / (args.peak_tflops * 1e12), 4),
        "peak_memory_gib": round(peak_memory_gib(), 2),
        "train_loss": round(summary["train_loss"], 4),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="a configuration label or recipe name")
    parser.add_argument("--steps", type=int, default=50, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_TFLOPS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="k=v")
    parser.add_argument("--output", type=Path, help="append one JSON line per configuration")
    args = parser.parse_args(argv)
    chosen = [c for c in CONFIGURATIONS if not args.only or c[0] in args.only or c[1] in args.only]
    if not chosen:
        parser.error(f"--only matches none of {[c[0] for c in CONFIGURATIONS]}")
    results = []
    for configuration in chosen:
        result = measure(*configuration, args)
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.output:
            with args.output.open("a") as out:
                out.write(json.dumps(result) + "\n")
    print_table(
        f"training throughput (peak {args.peak_tflops:g} TFLOP/s)",
        {
            r["configuration"]: f"{r['tokens_per_second']:,} tok/s  MFU {r['mfu']:.1%}  "
            f"{r['peak_memory_gib']} GiB"
            for r in results
        },
    )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""Kill a CPU pretraining run with SIGKILL at random moments, resume it, compare the weights.

Each trial starts `llmkit pretrain-clm` (a checkpoint every 8 of 96 steps), kills it at a
random moment of its training phase (timed from its first logged step), continues it with
`--resume auto`, and compares the final weights with an uninterrupted run's (max abs diff
<= 1e-6 counts as a match).

    python benchmarks/kill_resume.py [--trials 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from safetensors.torch import load_file  # noqa: E402

from llmkit.cli import quiet_libraries  # noqa: E402
from llmkit.commands.pretrain import run_pretrain  # noqa: E402
from llmkit.recipe import load_recipe  # noqa: E402
from llmkit.rundir import complete_checkpoints  # noqa: E402

OVERRIDES = [
    "data.seq_len=64",
    "tokenizer.vocab_size=1000",
    "model.hidden=64",
    "model.heads=2",
    "data.validation_fraction=0",
    "train.max_steps=96",
    "train.save_every=8",
    "train.log_every=1",
    "model.dropout=0.1",
]


def command(run_dir: Path) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "llmkit",
        "pretrain-clm",
        "--recipe",
        "gpt2-tiny",
        "-o",
        str(run_dir),
    ]
    for value in OVERRIDES:
        args += ["--set", value]
    return args


def start_training(run_dir: Path) -> subprocess.Popen:
    """Start a run and return once it logs its first training step."""
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(
        command(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    for line in process.stderr:
        if line.startswith("step"):
            break
    # Keep reading, or the full pipe would stall the run.
    threading.Thread(target=process.stderr.read, daemon=True).start()
    return process


def max_difference(a: Path, b: Path) -> float:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return max((x[k] - y[k]).abs().max().item() for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quiet_libraries()
    rng = random.Random(args.seed)
    recipe = load_recipe("gpt2-tiny", OVERRIDES)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMKIT_CACHE"] = f"{tmp}/cache"
        whole = Path(tmp) / "whole"
        process = start_training(whole)  # also fills the block cache for the trials
        started = time.perf_counter()
        process.wait()
        duration = time.perf_counter() - started
        matched = 0
        for trial in range(args.trials):
            run_dir = Path(tmp) / f"trial-{trial}"
            delay = rng.uniform(0, duration)
            process = start_training(run_dir)
            time.sleep(delay)
            finished_first = process.poll() is not None
            process.send_signal(signal.SIGKILL)
            process.wait()
            kept = complete_checkpoints(run_dir) if run_dir.exists() else []
            if (run_dir / "metrics.json").exists():
                outcome = "finished before the kill"
            else:
                resume = "auto" if (run_dir / "recipe.yaml").exists() else None
                run_pretrain(recipe, "clm", output_dir=run_dir, resume=resume)
                outcome = f"resumed from {kept[-1].name if kept else 'the start'}"
            difference = max_difference(whole, run_dir)
            matched += difference <= 1e-6
            late = " (it had finished)" if finished_first else ""
            when = f"killed after {delay:5.2f}s{late}"
            print(f"trial {trial}: {when}, {outcome}: max diff {difference:.1e}")
    print(f"\n{matched} of {args.trials} resumed runs ended with the uninterrupted weights")


if __name__ == "__main__":
    main()

"""TPE against random search, and what median pruning saves, on the same budget.

gpt2-tiny (its recipe, 1 layer, hidden 64, 64 positions, a 1,000-entry tokenizer trained
once) on the built-in corpus, `--set train.max_steps=STEPS train.eval_every=STEPS/6`; the
search space is learning rate × warmup × weight decay; 12 trials per sweep. Three sweeps
(samplers seeded 0, 1, 2) each of: random search, TPE, and TPE with `--prune median`.
Reported: the median over the sweeps of the best eval_loss, and for pruning the share of
training steps it saved against the unpruned TPE sweeps. Losses and step counts do not
depend on the machine's speed, so the cases may share the cores.

    python -m benchmarks.search [--steps 60] [--trials 12] [--sweeps 3]

Results go into benchmarks/out/search.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import OUT, ROOT

SPACES = [
    "train.lr=loguniform:1e-4:1e-2",
    "train.warmup=uniform:0:0.3",
    "train.weight_decay=loguniform:1e-4:0.3",
]
TINY = ["data.seq_len=64", "model.hidden=64", "model.heads=2", "model.layers=1"]
TINY += ["train.batch_size=16", "data.validation_fraction=0.05"]


def sets(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


def search(folder: Path, tokenizer: Path, options, seed: int, *extra: str) -> dict:
    overrides = [*TINY, f"tokenizer.path={tokenizer}", f"train.max_steps={options.steps}"]
    overrides.append(f"train.eval_every={max(1, options.steps // 6)}")
    command = [sys.executable, "-m", "llmkit", "sweep", "pretrain-clm", "-r", "gpt2-tiny"]
    command += ["-o", str(folder), "--trials", str(options.trials), "--seed", str(seed)]
    command += [arg for space in SPACES for arg in ("--space", space)]
    command += [*extra, *sets(overrides), "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    steps = sum(
        json.loads(metrics.read_text())["steps"] for metrics in folder.glob("trial-*/metrics.json")
    )
    return {"best": summary["best"]["eval_loss"], "steps": steps, "pruned": summary["pruned"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--sweeps", type=int, default=3)
    options = parser.parse_args()
    cases = {
        "random": ["--search", "random"],
        "tpe": ["--search", "tpe"],
        "tpe+median": ["--search", "tpe", "--prune", "median"],
    }
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = Path(folder) / "tokenizer"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "llmkit",
                "tokenize",
                "-r",
                "tokenizer-byte-bpe",
                "-o",
                str(tokenizer),
            ]
            + sets(["tokenizer.vocab_size=1000"]),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        results = {name: [] for name in cases}
        for seed in range(options.sweeps):
            for name, extra in cases.items():
                out = Path(folder) / f"{name}-{seed}"
                results[name].append(search(out, tokenizer, options, seed, *extra))
                print(name, seed, results[name][-1], flush=True)
    summary = {
        name: {
            "median_best_eval_loss": statistics.median(r["best"] for r in runs),
            "sweeps": runs,
        }
        for name, runs in results.items()
    }
    unpruned = sum(r["steps"] for r in results["tpe"])
    pruned = sum(r["steps"] for r in results["tpe+median"])
    summary["pruning_saved_steps"] = round(1 - pruned / unpruned, 3)
    summary["pruned_best_vs_unpruned"] = round(
        summary["tpe+median"]["median_best_eval_loss"] / summary["tpe"]["median_best_eval_loss"]
        - 1,
        4,
    )
    summary["settings"] = vars(options) | {"spaces": SPACES, "tiny": TINY}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "search.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=2))


if __name__ == "__main__":
    main()

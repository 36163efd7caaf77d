"""Time to quality: how much wall time a pretraining recipe needs to reach a held-out loss.

Causal part (issue 29). Every run trains on the same text (WikiText-2 valid) with the same
tokenizer (byte-BPE, 4,096 entries, trained once), for the same number of steps and the same
global batch, and is scored on the same held-out windows (WikiText-2 test, `data.validation`)
by `eval_loss` every `steps / 8` steps (the first 300 lines of WikiText-2 test):

- the baseline: gpt2-tiny's shape with AdamW and a cosine schedule, at three learning rates,
  the best kept (an untuned baseline proves nothing);
- the new recipe: the nanochat family, Muon and warmup-stable-decay, at the same steps and at
  half of them (WSD's decay must finish inside the budget it is judged on);
- the ablations: each ingredient alone on the baseline (Muon; WSD; the nanochat family).

A run's wall time at a step is the step times its measured seconds per training step
(Trainer's train_runtime less the evaluations' eval_runtime). Reported: each run's final
loss and tokens/s, its parameters, the time at which it first reached the best baseline's
final loss (interpolated between evaluations), and that time as a share of the baseline's.
Runs go one after another, nothing else running.

    python -m benchmarks.time_to_quality [--steps 1200] [--quick]

Results go into benchmarks/out/time_to_quality.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import OUT, ROOT, SHARED_DATA, WIKITEXT_VALID

SHAPE = ["data.seq_len=128", "model.layers=2", "model.hidden=128", "model.heads=4"]
SHAPE += ["model.dropout=0", "train.batch_size=16", "train.warmup=0.02", "train.log_every=50"]
BASELINE_LRS = (1e-3, 2e-3, 4e-3, 8e-3)  # 4e-3 was best on 2026-12-06, bracketed
MUON = ["train.optimizer=muon", "train.weight_decay=0", "train.lr=3e-3"]
WSD = ["train.schedule=wsd", "train.decay_fraction=0.2"]
NANOCHAT = ["model.family=nanochat"]


HELD_OUT_LINES = 300  # of WikiText-2 test: ~17,000 tokens, scored 9 times a run


def held_out(folder: Path) -> Path:
    """The first lines of WikiText-2 test (tokenized, as the training text is), else the
    repository's raw slice of it."""
    shared = SHARED_DATA / "wikitext-2" / "test.txt"
    if not shared.is_file():
        return ROOT / "tests" / "fixtures" / "wikitext-2-raw-test-head.raw"
    lines = shared.read_text(encoding="utf-8").splitlines(keepends=True)[:HELD_OUT_LINES]
    (folder / "held-out.txt").write_text("".join(lines), encoding="utf-8")
    return folder / "held-out.txt"


def common_settings(folder: Path) -> list[str]:
    """What every run shares: the shape, the text, the held-out windows, and a byte-BPE of
    4,096 entries trained once (into `folder`)."""
    tokenizer = folder / "tokenizer"
    llmkit(
        "tokenize", "-r", "tokenizer-byte-bpe", "-o", str(tokenizer),
        "--set", f"data.train={WIKITEXT_VALID}", "--set", "tokenizer.vocab_size=4096",
    )  # fmt: skip
    data = [f"data.train={WIKITEXT_VALID}", f"data.validation={held_out(folder)}"]
    return [*SHAPE, *data, f"tokenizer.path={tokenizer}"]


def llmkit(*args: str) -> dict:
    command = [sys.executable, "-m", "llmkit", *args, "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pretrain(folder: Path, name: str, overrides: list[str], steps: int) -> dict:
    run_dir = folder / name
    every = max(1, steps // 8)
    settings = [*overrides, f"train.max_steps={steps}", f"train.eval_every={every}"]
    summary = llmkit(
        "pretrain-clm", "-r", "gpt2-tiny", "-o", str(run_dir),
        *[arg for s in settings for arg in ("--set", s)],
    )  # fmt: skip
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    curve = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
    # Trainer's train_runtime includes the evaluations during training: take them out.
    evaluating = sum(e["eval_runtime"] for e in history if "eval_runtime" in e)
    seconds_per_step = (summary["train_runtime_s"] - evaluating) / summary["steps"]
    return {
        "overrides": overrides,
        "steps": steps,
        "final_loss": summary["eval_loss"],
        "tokens_per_second": summary["tokens_per_second"],
        "parameters": summary["parameters"],
        "seconds_per_step": seconds_per_step,
        "curve": curve,
    }


def time_to(run: dict, target: float) -> float | None:
    """Seconds of training until the run's held-out loss first reached `target`."""
    previous = None
    for step, loss in run["curve"]:
        if loss <= target:
            if previous is None:
                return step * run["seconds_per_step"]
            (step0, loss0) = previous
            reached = step0 + (step - step0) * (loss0 - target) / (loss0 - loss)
            return reached * run["seconds_per_step"]
        previous = (step, loss)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--quick", action="store_true", help="200 steps, one baseline rate")
    options = parser.parse_args()
    steps = 200 if options.quick else options.steps
    rates = BASELINE_LRS[:1] if options.quick else BASELINE_LRS
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        common = common_settings(folder)
        runs = {
            f"baseline lr {lr:g}": pretrain(
                folder, f"base-{lr:g}", [*common, f"train.lr={lr}"], steps
            )
            for lr in rates
        }
        best = min(runs, key=lambda name: runs[name]["final_loss"])
        best_lr = runs[best]["overrides"][-1]
        cases = {
            "new: nanochat + Muon + WSD": [*common, *NANOCHAT, *MUON, *WSD],
            "Muon only": [*common, *MUON],
            "WSD only": [*common, best_lr, *WSD],
            "nanochat only": [*common, best_lr, *NANOCHAT],
        }
        for name, overrides in cases.items():
            runs[name] = pretrain(folder, name.split(":")[0].replace(" ", "-"), overrides, steps)
        half = "new at half the steps"
        runs[half] = pretrain(folder, "new-half", cases["new: nanochat + Muon + WSD"], steps // 2)
    report("time_to_quality", runs, best, steps)


def report(name: str, runs: dict[str, dict], baseline: str, steps: int, **extra) -> None:
    """Each run's time to the baseline's final loss and its share of the baseline's time,
    written to benchmarks/out/<name>.json and printed as a table."""
    target = runs[baseline]["final_loss"]
    baseline_time = runs[baseline]["seconds_per_step"] * steps
    for run in runs.values():
        reached = time_to(run, target)
        run["seconds_to_baseline_loss"] = reached
        run["share_of_baseline_time"] = reached / baseline_time if reached is not None else None
    result = {"steps": steps, "best_baseline": baseline, "target_loss": target, **extra}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result | {"runs": runs}, indent=2) + "\n")
    print(f"target: {baseline}'s final held-out loss {target:.4f} after {baseline_time:.0f} s")
    width = max(map(len, runs))
    print(f"{'run':{width}} {'loss':>7} {'tok/s':>7} {'params':>9} {'to target':>10} {'share':>6}")
    for run_name, run in runs.items():
        reached, share = run["seconds_to_baseline_loss"], run["share_of_baseline_time"]
        print(
            f"{run_name:{width}} {run['final_loss']:7.4f} {run['tokens_per_second']:7.0f} "
            f"{run['parameters']:9,} {f'{reached:.0f} s' if reached else '—':>10} "
            f"{f'{share:.2f}' if share else '—':>6}"
        )


if __name__ == "__main__":
    main()

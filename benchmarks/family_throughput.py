"""Training tokens/s of the modern families against the ones they replace, at the same shape
(issue 29's target: nanochat within 10% of gpt2, modernbert within 10% of bert).

Every way is `llmkit pretrain-clm/-mlm` as a user runs it (Trainer, AdamW, the fast paths:
chunked loss, fused activations), in a fresh process (harness.compare, ways alternating):
time_to_quality's shape (2 layers, hidden 128, 4 heads, 128-token blocks, batch 16, no
dropout), the built-in corpus, one tokenizer per objective trained once, no evaluation,
--steps steps. The metric is the run's training tokens/s.

    python -m benchmarks.family_throughput [--steps 150] [--rounds 3]

Results go into benchmarks/out/family_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import benchmark_main, compare, save_result

SHAPE = ["model.layers=2", "model.hidden=128", "model.heads=4", "data.seq_len=128"]
SHAPE += ["train.batch_size=16", "model.dropout=0", "data.validation_fraction=0"]
FAMILIES = {  # family: (objective, recipe)
    "gpt2": ("clm", "gpt2-tiny"),
    "nanochat": ("clm", "gpt2-tiny"),
    "bert": ("mlm", "bert-tiny"),
    "modernbert": ("mlm", "bert-tiny"),
}
PAIRS = (("nanochat", "gpt2"), ("modernbert", "bert"))


def train(family: str, options: dict) -> dict:
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.recipe import load_recipe

    objective, recipe = FAMILIES[family]
    overrides = [*SHAPE, f"model.family={family}", f"train.max_steps={options['steps']}"]
    overrides += [f"tokenizer.path={options['tokenizers'][objective]}", "train.log_every=1000"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMKIT_CACHE"] = f"{tmp}/cache"
        summary = run_pretrain(
            load_recipe(recipe, overrides), objective, output_dir=Path(tmp) / "run"
        )
    return {"value": summary["tokens_per_second"], "chunked_loss": summary["chunked_loss"]}


WAYS = {family: (lambda options, family=family: train(family, options)) for family in FAMILIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    from llmkit.commands.tokenize import run_tokenize
    from llmkit.recipe import load_recipe

    with tempfile.TemporaryDirectory() as scratch:
        tokenizers = {}
        for objective, recipe in (("clm", "tokenizer-byte-bpe"), ("mlm", "tokenizer-wordpiece")):
            folder = Path(scratch) / objective
            run_tokenize(load_recipe(recipe, ["tokenizer.vocab_size=4096"]), output_dir=folder)
            tokenizers[objective] = str(folder)
        settings = {"steps": options.steps, "tokenizers": tokenizers}
        comparison = compare(
            "family_throughput",
            "pretrain",
            "tokens/s",
            rounds=options.rounds,
            options=settings,
            ways=tuple(FAMILIES),
        )
    medians = {family: statistics.median(comparison.values(family)) for family in FAMILIES}
    ratios = {f"{new}/{old}": medians[new] / medians[old] for new, old in PAIRS}
    result = {
        "steps": options.steps,
        "cores": len(os.sched_getaffinity(0)),
        "tokens_per_second": {family: comparison.values(family) for family in FAMILIES},
        "ratios": ratios,
        "chunked_loss": {f: runs[0]["chunked_loss"] for f, runs in comparison.runs.items()},
    }
    save_result("family_throughput", result)
    for pair, ratio in ratios.items():
        print(f"{pair}: {ratio:.3f} of the tokens/s (target ≥ 0.9)")


if __name__ == "__main__":
    benchmark_main(WAYS, main)

"""Perplexity scoring on a CPU: batches side by side (one per core, each op on one thread)
against one batch at a time (each op on all cores), in one process.

    python -m benchmarks.scoring_workers [--tokens 45000] [--pairs 12]

The two ways alternate (which goes first alternates too) and each pair gives one ratio, so a
machine whose speed drifts during the run moves both ways alike; the median ratio and its
quartiles are printed for three model widths. The models are randomly initialised GPT-2s
(the time of a forward pass does not depend on the weights or on which tokens are scored),
windows of 128 every 64 tokens, batches of 16, as `llmkit eval-ppl` scores them. Both ways
must give the same floats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from llmkit import perplexity

SHAPES = {  # name: (hidden, layers, vocabulary)
    "gpt2-tiny": (128, 2, 4096),
    "384 wide, 4 layers": (384, 4, 8192),
    "gpt2-small's width, 2 layers": (768, 2, 50304),
}


def timed_scoring(model, windows, workers: int) -> tuple[float, list[float]]:
    # One batch at a time is what scoring_workers returning 1 gives; patched here only.
    original = perplexity.scoring_workers
    perplexity.scoring_workers = lambda device: workers
    try:
        started = time.perf_counter()
        scores = perplexity.score_windows(model, windows, batch_size=16, pad_id=0)
        return time.perf_counter() - started, scores
    finally:
        perplexity.scoring_workers = original


def measure(hidden: int, layers: int, vocabulary: int, tokens: int, pairs: int) -> dict:
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=hidden, n_layer=layers, n_head=max(1, hidden // 32), vocab_size=vocabulary
    )
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, vocabulary, (tokens,)).tolist()
    windows = list(perplexity.sliding_windows(ids, 128, 64))
    side_by_side = torch.get_num_threads()
    ratios = []
    for pair in range(pairs):
        seconds = {}
        for workers in (1, side_by_side) if pair % 2 else (side_by_side, 1):
            seconds[workers], _ = timed_scoring(model, windows, workers)
        ratios.append(seconds[1] / seconds[side_by_side])
    one, many = (timed_scoring(model, windows, w)[1] for w in (1, side_by_side))
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "threads": side_by_side,
        "speed_up_median": statistics.median(ratios),
        "speed_up_quartiles": [quartiles[0], quartiles[2]],
        "tokens_per_second_side_by_side": sum(len(w.targets) for w in windows)
        / seconds[side_by_side],
        "same_scores": one == many,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=45000)
    parser.add_argument("--pairs", type=int, default=12)
    args = parser.parse_args()
    results = {}
    for name, shape in SHAPES.items():
        tokens = args.tokens if shape[0] <= 384 else args.tokens // 5
        results[name] = measure(*shape, tokens, args.pairs)
        print(name, json.dumps(results[name]), flush=True)


if __name__ == "__main__":
    main()

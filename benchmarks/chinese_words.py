"""Whole-word masking of Chinese: what the segmenter costs tokenize + pack (issue 31).

The same Chinese corpus is encoded and packed into masked-LM blocks by `pack_into_blocks`
twice: as today (no word flags) and with `segmenter="jieba"` (offsets from the encoder,
rjieba's words, a `word_continues` column). Each way runs in fresh, alternating processes
(harness.compare); the metric is MB of text per second, reading and cleaning the file
included. Target: the segmenter keeps ≥ 0.8× today's throughput.

The corpus is the hand-written Chinese sentences of tests/fixtures/chinese (written for the
project), drawn at random into documents of 1 to 12 sentences until it reaches --megabytes:
real sentences, repeated, so the tokenizer sees a realistic mix of characters and lengths.

    python -m benchmarks.chinese_words [--megabytes 20] [--rounds 3]

Results go into benchmarks/out/chinese_words.json.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, benchmark_main, compare, save_result

SENTENCES = ROOT / "tests" / "fixtures" / "chinese" / "essays.txt"


def write_corpus(path: Path, megabytes: float) -> None:
    sentences = SENTENCES.read_text(encoding="utf-8").split()
    draw = random.Random(0)
    size, lines = 0, []
    while size < megabytes * 1e6:
        line = "".join(draw.choices(sentences, k=draw.randint(1, 12)))
        lines.append(line)
        size += len(line.encode()) + 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def pack(options: dict, segmenter: str | None) -> dict:
    from llmkit.data.corpus import corpus_rows
    from llmkit.data.packing import pack_into_blocks
    from llmkit.recipe import DataConfig
    from llmkit.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(options["tokenizer"])
    megabytes = Path(options["corpus"]).stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        rows = corpus_rows(DataConfig(), options["corpus"], split="train", what="read")
        stats = pack_into_blocks(
            rows.batches,
            tokenizer,
            128,
            "mlm",
            Path(folder) / "b",
            num_proc=len(os.sched_getaffinity(0)),
            segmenter=segmenter,
        )
        seconds = time.perf_counter() - started
    return {"value": megabytes / seconds, "blocks": stats.blocks, "tokens": stats.tokens}


WAYS = {
    "segmenter jieba": lambda options: pack(options, "jieba"),
    "no segmenter": lambda options: pack(options, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    from llmkit.data.sampling import Sample
    from llmkit.recipe import TokenizerConfig
    from llmkit.tokenizer import save_tokenizer, train_tokenizer_on

    with tempfile.TemporaryDirectory() as scratch:
        corpus, tokenizer = Path(scratch) / "zh.txt", Path(scratch) / "tokenizer"
        write_corpus(corpus, options.megabytes)
        sample = Sample(SENTENCES.read_text(encoding="utf-8").split(), 0, True)
        config = TokenizerConfig(type="wordpiece", alphabet="cjk-simplified", vocab_size=8000)
        save_tokenizer(train_tokenizer_on(sample, config), tokenizer)
        settings = {"corpus": str(corpus), "tokenizer": str(tokenizer)}
        comparison = compare(
            "chinese_words",
            "tokenize + pack",
            "MB/s",
            rounds=options.rounds,
            options=settings,
            ways=tuple(WAYS),
        )
    ratio = comparison.median("segmenter jieba") / comparison.median("no segmenter")
    result = {
        "megabytes": options.megabytes,
        "cores": len(os.sched_getaffinity(0)),
        "mb_per_second": {way: comparison.values(way) for way in WAYS},
        "ratio": ratio,
        "blocks": {way: runs[0]["blocks"] for way, runs in comparison.runs.items()},
    }
    save_result("chinese_words", result)
    print(f"segmenter jieba / none: {ratio:.2f}× the MB/s (target ≥ 0.8×)")


if __name__ == "__main__":
    benchmark_main(WAYS, main)

"""Tokenize + pack throughput: llmkit against the plain Hugging Face way, on the same text.

The plain way is what HF's run_clm.py does: `datasets.map` calling the tokenizer on batches
of rows, then a second `datasets.map` with `group_texts` (concatenate each batch of 1,000 rows
and cut it into blocks). llmkit encodes with the Rust batch encoder and packs with numpy.
Both use the same tokenizer, text and block length; runs alternate and the median is shown.

    python benchmarks/tokenize_pack.py [--mb 10] [--seq-len 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from itertools import chain
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402

from llmkit.data.cleaning import clean_corpus  # noqa: E402
from llmkit.data.packing import pack_into_blocks  # noqa: E402
from llmkit.data.sources import BUILTIN_CORPUS  # noqa: E402
from llmkit.recipe import CleaningConfig, TokenizerConfig  # noqa: E402
from llmkit.tokenizer import train_tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpus_text(megabytes: float) -> str:
    """Real text of about `megabytes`: WikiText and Shakespeare when present, else builtin."""
    files = [SHARED / "wikitext-2" / "test.txt", SHARED / "tinyshakespeare" / "input.txt"]
    parts = [f.read_text(encoding="utf-8") for f in files if f.is_file()]
    parts.append(BUILTIN_CORPUS.read_text(encoding="utf-8"))
    text = "".join(parts)
    repeats = max(1, round(megabytes * 1e6 / len(text.encode())))
    return text * repeats


def plain_hf_way(texts: datasets.Dataset, tokenizer, seq_len: int) -> int:
    """run_clm.py's tokenize_function + group_texts, verbatim in behaviour."""

    def tokenize_function(examples):
        return tokenizer(examples["text"])

    tokenized = texts.map(tokenize_function, batched=True, remove_columns=["text"])

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated[list(examples.keys())[0]])
        total_length = (total_length // seq_len) * seq_len
        result = {
            k: [t[i : i + seq_len] for i in range(0, total_length, seq_len)]
            for k, t in concatenated.items()
        }
        result["labels"] = result["input_ids"].copy()
        return result

    return len(tokenized.map(group_texts, batched=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="corpus size in MB")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.disable_caching()  # every run does the work; nothing is served from a cache

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_text(corpus_text(args.mb), encoding="utf-8")
        raw = datasets.load_dataset("text", data_files=str(path), split="train")
        texts, _ = clean_corpus(raw, CleaningConfig(min_chars=1))
        texts = texts.flatten_indices()
        megabytes = sum(len(t.encode()) for t in texts["text"]) / 1e6
        lines = (t for batch in texts.iter(batch_size=10_000) for t in [batch["text"]])
        tokenizer = train_tokenizer(lines, TokenizerConfig(vocab_size=8192))

        timings: dict[str, list[float]] = {"llmkit": [], "plain HF (map + group_texts)": []}
        blocks: dict[str, int] = {}
        for _ in range(args.repeats):
            started = time.perf_counter()
            packed, _ = pack_into_blocks(texts, tokenizer, args.seq_len, "clm")
            timings["llmkit"].append(time.perf_counter() - started)
            blocks["llmkit"] = len(packed)
            started = time.perf_counter()
            blocks["plain HF (map + group_texts)"] = plain_hf_way(texts, tokenizer, args.seq_len)
            timings["plain HF (map + group_texts)"].append(time.perf_counter() - started)

    print(f"corpus: {megabytes:.1f} MB of UTF-8 text, {len(texts):,} rows; seq_len {args.seq_len};")
    print(f"{os.cpu_count()} CPU cores; median of {args.repeats} alternating runs\n")
    print(f"{'method':32} {'MB/s':>8} {'min':>8} {'max':>8} {'blocks':>8}")
    rates = {}
    for name, seconds in timings.items():
        rates[name] = megabytes / statistics.median(seconds)
        print(
            f"{name:32} {rates[name]:8.2f} {megabytes / max(seconds):8.2f} "
            f"{megabytes / min(seconds):8.2f} {blocks[name]:8,}"
        )
    ratio = rates["llmkit"] / rates["plain HF (map + group_texts)"]
    print(f"\nllmkit / plain: {ratio:.2f}x")
    # llmkit adds one EOS per document and drops one remainder; run_clm adds none and drops
    # one remainder per 1,000 rows, so llmkit has slightly more blocks.


if __name__ == "__main__":
    main()

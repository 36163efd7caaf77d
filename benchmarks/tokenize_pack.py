"""Tokenize + pack throughput: llmkit against the plain Hugging Face way, on the same text.

The plain way is what HF's run_clm.py does: `datasets.map` calling the tokenizer on batches
of rows, then a second `datasets.map` with `group_texts` (concatenate each batch of 1,000 rows
and cut it into blocks). llmkit streams the file (read, clean, encode with the Rust batch
encoder in forked workers, pack with numpy, write Arrow shards). Both use the same tokenizer,
text and block length; the metric is MB of text per second of tokenize + pack (llmkit's
timing also holds reading the file and writing the blocks; the plain way's does not).
Quality: both pack the same text tokens, up to what each drops by design: run_clm drops the
remainder of every 1,000-row batch (under seq_len tokens each), llmkit only the final partial
block; llmkit's EOS between documents is not counted.

    python -m benchmarks.run_all --only tokenize     (or: make bench)
"""

from __future__ import annotations

import time
from itertools import chain

from benchmarks.harness import way_main


def _corpus(options: dict):
    import datasets

    from llmkit.data.cleaning import RowCleaner
    from llmkit.recipe import CleaningConfig

    datasets.disable_caching()  # every run does the work; nothing is served from a cache
    raw = datasets.load_dataset("text", data_files=options["corpus"], split="train")
    texts = RowCleaner(CleaningConfig(min_chars=1))(raw["text"])
    texts = datasets.Dataset.from_dict({"text": texts})
    megabytes = sum(len(t.encode()) for t in texts["text"]) / 1e6
    return texts, megabytes


def llmkit_way(options: dict) -> dict:
    """The corpus streamed from its file (read, cleaned, encoded, packed and written to Arrow
    shards): more work inside the timing than the plain way, which starts from rows loaded."""
    import tempfile
    from pathlib import Path

    from llmkit.data.corpus import corpus_rows
    from llmkit.data.packing import pack_into_blocks
    from llmkit.recipe import DataConfig
    from llmkit.tokenizer import load_tokenizer

    _, megabytes = _corpus(options)
    tokenizer = load_tokenizer(options["tokenizer"])
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        rows = corpus_rows(DataConfig(), options["corpus"], split="train", what="read")
        pack_into_blocks(rows.batches, tokenizer, options["seq_len"], "clm", Path(folder) / "b")
        seconds = time.perf_counter() - started
        import datasets

        packed = datasets.load_from_disk(str(Path(folder) / "b"))
        # llmkit ends each document with EOS, which run_clm does not add: compare text tokens.
        text_tokens = sum(
            int((block != tokenizer.eos_token_id).sum())
            for block in packed.with_format("numpy")["input_ids"]
        )
    return {"value": megabytes / seconds, "tokens": text_tokens}


def plain_way(options: dict) -> dict:
    """run_clm.py's tokenize_function + group_texts, verbatim in behaviour."""
    from transformers import AutoTokenizer

    texts, megabytes = _corpus(options)
    tokenizer = AutoTokenizer.from_pretrained(options["tokenizer"])
    seq_len = options["seq_len"]
    started = time.perf_counter()

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

    blocks = tokenized.map(group_texts, batched=True)
    seconds = time.perf_counter() - started
    return {"value": megabytes / seconds, "tokens": len(blocks) * seq_len, "rows": len(texts)}


WAYS = {"llmkit": llmkit_way, "plain HF": plain_way}

if __name__ == "__main__":
    way_main(WAYS)

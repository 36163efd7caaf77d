"""Encode a text corpus and pack it into fixed-length blocks, cached by fingerprint.

Layouts:
  clm  documents joined with EOS into one stream, cut into seq_len blocks (no padding)
  mlm  the stream cut into seq_len-2 pieces, each wrapped as [CLS] ... [SEP]
  nsp  sentence pairs for next-sentence prediction (see nsp.py)

Encoding runs through the Rust tokenizer's batch encoder (in forked workers for large
corpora) and packing through numpy. Only the final partial
block is dropped. A packed corpus is saved with `save_to_disk` under a folder named by the
fingerprint of everything that shapes it (corpus, cleaning, tokenizer, seq_len, layout); the
next run with the same inputs loads it instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import InMemoryTable
from transformers import PreTrainedTokenizerFast

from llmkit.errors import UserError

Layout = Literal["clm", "mlm", "nsp"]
# Bump when the packed format changes, so that old cache entries are not reused.
PACKING_VERSION = 1
STATS_FILE = "llmkit_stats.json"


@dataclass
class EncodeStats:
    documents: int = 0
    characters: int = 0
    utf8_bytes: int = 0
    tokens: int = 0  # tokens of the text itself, without separators
    unknown_tokens: int = 0
    seconds: float = 0.0
    blocks: int = 0
    dropped_tokens: int = 0  # the final partial block

    @property
    def chars_per_token(self) -> float:
        return self.characters / self.tokens if self.tokens else 0.0

    @property
    def unknown_rate(self) -> float:
        return self.unknown_tokens / self.tokens if self.tokens else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.utf8_bytes / 1e6 / self.seconds if self.seconds else 0.0

    def add(self, other: EncodeStats) -> None:
        for name in ("documents", "characters", "utf8_bytes", "tokens", "unknown_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, float | int]:
        return {
            **asdict(self),
            "chars_per_token": self.chars_per_token,
            "unknown_rate": self.unknown_rate,
            "mb_per_second": self.megabytes_per_second,
        }


# Rows per unit of work: one Rust batch call in-process, one task for a worker process.
CHUNK_ROWS = 20_000
# Below this many rows, starting worker processes costs more than it saves.
PARALLEL_MIN_ROWS = 50_000

# What forked workers read: set in the parent just before the pool starts, inherited by fork
# (pickling a dataset or tokenizer into every task would copy them again and again).
_shared: dict = {}


@dataclass
class EncodedChunk:
    ids: np.ndarray  # int32: the chunk's documents, each followed by the separator ids
    doc_lengths: np.ndarray  # tokens of each document, separators included
    stats: EncodeStats


def _encode_chunk(bounds: tuple[int, int]) -> EncodedChunk:
    """Token ids of rows [start, end), each document followed by the separator ids."""
    texts, tokenizer, after_doc = _shared["texts"], _shared["tokenizer"], _shared["after_doc"]
    column = texts.with_format("arrow")[bounds[0] : bounds[1]].column("text")
    encodings = tokenizer.backend_tokenizer.encode_batch_fast(
        column.to_pylist(), add_special_tokens=False
    )
    ids = [e.ids for e in encodings]
    stats = EncodeStats(
        documents=len(ids),
        characters=pc.sum(pc.utf8_length(column)).as_py() or 0,
        utf8_bytes=pc.sum(pc.binary_length(column)).as_py() or 0,
        tokens=sum(map(len, ids)),
    )
    # A byte-level tokenizer maps unknowns onto a real token (GPT-2's <|endoftext|>), which
    # plain text never produces, so counting that id is still an honest unknown rate.
    if tokenizer.unk_token_id is not None:
        stats.unknown_tokens = sum(doc.count(tokenizer.unk_token_id) for doc in ids)
    for doc in ids:
        doc.extend(after_doc)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return EncodedChunk(flat, lengths, stats)


def _worker_count(rows: int, num_proc: int | None) -> int:
    wanted = num_proc or os.cpu_count() or 1
    if wanted <= 1 or rows < PARALLEL_MIN_ROWS or "fork" not in mp.get_all_start_methods():
        return 1
    return min(wanted, -(-rows // CHUNK_ROWS))


def encode_chunks(
    texts: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    after_doc: list[int],
    *,
    num_proc: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[EncodedChunk]:
    """Encoded chunks of the corpus, in corpus order.

    One process: the Rust batch encoder already uses every core. Several (large corpora):
    forked workers each encode contiguous rows, which also spreads the Python-side work
    (turning encodings into arrays) that a single process would do on one core.
    """
    bounds = [(i, min(i + CHUNK_ROWS, len(texts))) for i in range(0, len(texts), CHUNK_ROWS)]
    workers = _worker_count(len(texts), num_proc)
    _shared.update(texts=texts, tokenizer=tokenizer, after_doc=after_doc)
    try:
        if workers == 1:
            for start_end in bounds:
                yield _encode_chunk(start_end)
                if on_rows is not None:
                    on_rows(start_end[1] - start_end[0])
            return
        with _single_threaded_tokenizers(), mp.get_context("fork").Pool(workers) as pool:
            for start_end, result in zip(bounds, pool.imap(_encode_chunk, bounds), strict=True):
                yield result
                if on_rows is not None:
                    on_rows(start_end[1] - start_end[0])
    finally:
        _shared.clear()


@contextmanager
def _single_threaded_tokenizers() -> Iterator[None]:
    """Forked workers each encode on one thread; saying so up front also stops tokenizers
    from warning about a fork after its thread pool was used."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def count_tokens(texts, tokenizer, *, num_proc=None, on_rows=None) -> EncodeStats:
    """Encode the corpus once only to measure it (tokens, unknown rate, throughput)."""
    started = time.perf_counter()
    total = EncodeStats()
    for chunk in encode_chunks(texts, tokenizer, [], num_proc=num_proc, on_rows=on_rows):
        total.add(chunk.stats)
    total.seconds = time.perf_counter() - started
    return total


def _separator_ids(
    tokenizer: PreTrainedTokenizerFast, layout: Layout
) -> tuple[list[int], list[int], list[int]]:
    """(after each document, before each block, after each block) token ids."""
    if layout == "clm":
        if tokenizer.eos_token_id is None:
            raise UserError(
                "the tokenizer has no EOS token, which CLM packing puts between documents"
            )
        return [tokenizer.eos_token_id], [], []
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise UserError(
            "the tokenizer has no [CLS]/[SEP] tokens, which MLM blocks need",
            "train it with tokenizer.style: bert (or roberta)",
        )
    # BERT pretraining separates documents only by block boundaries; [SEP] marks their ends.
    return [sep_id], [cls_id], [sep_id]


def pack_into_blocks(
    texts: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    seq_len: int,
    layout: Layout,
    *,
    num_proc: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> tuple[datasets.Dataset, EncodeStats]:
    """Encode `texts` (a dataset with a `text` column) and cut the stream into blocks."""
    after_doc, head, tail = _separator_ids(tokenizer, layout)
    body = seq_len - len(head) - len(tail)
    started = time.perf_counter()
    stats = EncodeStats()
    pieces: list[np.ndarray] = []
    carry = np.empty(0, dtype=np.int32)
    for chunk in encode_chunks(texts, tokenizer, after_doc, num_proc=num_proc, on_rows=on_rows):
        stats.add(chunk.stats)
        stream = np.concatenate([carry, chunk.ids])
        usable = len(stream) - len(stream) % body
        pieces.append(stream[:usable])
        carry = stream[usable:]
    stats.dropped_tokens = len(carry)
    blocks = np.concatenate(pieces).reshape(-1, body)
    if head or tail:
        n = len(blocks)
        blocks = np.hstack(
            [
                np.full((n, len(head)), head, np.int32),
                blocks,
                np.full((n, len(tail)), tail, np.int32),
            ]
        )
    stats.blocks = len(blocks)
    if stats.blocks == 0:
        raise UserError(
            f"the corpus ({stats.tokens:,} tokens) is too small for one block of {seq_len} tokens",
            "use more text or a smaller data.seq_len",
        )
    column = pa.FixedSizeListArray.from_arrays(pa.array(blocks.reshape(-1)), seq_len)
    stats.seconds = time.perf_counter() - started
    return datasets.Dataset(InMemoryTable(pa.table({"input_ids": column}))), stats


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """Changes whenever encoding could change (vocab, merges, normalizer, templates)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def blocks_fingerprint(**inputs: object) -> str:
    payload = json.dumps(
        {"packing_version": PACKING_VERSION, **inputs}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def default_cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    return Path(os.environ.get("LLMKIT_CACHE", Path.home() / ".cache" / "llmkit"))


def load_cached_blocks(
    cache_dir: Path, fingerprint: str
) -> tuple[datasets.Dataset, EncodeStats] | None:
    folder = cache_dir / "blocks" / fingerprint
    stats_file = folder / STATS_FILE
    if not stats_file.is_file():  # written last: its presence means the entry is complete
        return None
    return datasets.load_from_disk(str(folder)), EncodeStats(**json.loads(stats_file.read_text()))


def save_cached_blocks(
    cache_dir: Path, fingerprint: str, blocks: datasets.Dataset, stats: EncodeStats
) -> Path:
    """Write to a temporary folder and rename, so an entry is either complete or absent."""
    final = cache_dir / "blocks" / fingerprint
    staging = final.with_name(f".{fingerprint}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    blocks.save_to_disk(str(staging))
    (staging / STATS_FILE).write_text(json.dumps(asdict(stats)))
    if final.exists() and not (final / STATS_FILE).is_file():
        shutil.rmtree(final, ignore_errors=True)  # left by a run killed before renaming
    try:
        staging.rename(final)
    except OSError:  # another process finished the same entry first
        shutil.rmtree(staging, ignore_errors=True)
    return final

"""Encode a stream of text and pack it into fixed-length blocks, cached by fingerprint.

Layouts:
  clm  documents joined with EOS into one stream, cut into seq_len blocks (no padding)
  mlm  the stream cut into seq_len-2 pieces, each wrapped as [CLS] ... [SEP]
  nsp  sentence pairs for next-sentence prediction (see nsp.py)

With a word segmenter (whole-word masking of Chinese, words.py) each block also carries
`word_continues`: per token, 1 where it continues the segmenter's word.

Encoding runs through the Rust tokenizer's batch encoder (in forked workers for large
corpora) and packing through numpy, a chunk at a time: blocks are written to Arrow shards
(shards.py) as they fill, so memory does not depend on the corpus. Only the final partial
block is dropped. A packed corpus lives in a cache folder named by the fingerprint of
everything that shapes it (corpus, cleaning, tokenizer, seq_len, layout, max_tokens); the
next run with the same inputs maps it instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerFast

from llmkit.data import words
from llmkit.data.shards import STATS_FILE, ShardWriter
from llmkit.errors import UserError

Layout = Literal["clm", "mlm", "nsp"]
# Bump when the packed format changes, so that old cache entries are not reused.
PACKING_VERSION = 2  # 2: shards written as they fill, uint16 ids where the vocabulary allows


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
    word_segmenter: str | None = None  # whole-word masking's words came from it (jieba)

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


# Characters of text per unit of work: one Rust batch call in-process, one task for a worker.
CHUNK_CHARS = 1_000_000
# Tasks handed to each worker ahead of the one being collected: enough to keep every core
# busy, few enough that memory does not depend on the corpus.
TASKS_AHEAD = 2

# What forked workers read: set in the parent just before the pool starts, inherited by fork
# (pickling the tokenizer into every task would copy it again and again).
_shared: dict = {}


@dataclass
class EncodedChunk:
    ids: np.ndarray  # the chunk's documents, each followed by the separator ids
    doc_lengths: np.ndarray  # tokens of each document, separators included
    stats: EncodeStats
    continues: np.ndarray | None = None  # per id: continues a segmenter's word (words.py)


def token_dtype(tokenizer: PreTrainedTokenizerFast) -> np.dtype:
    """uint16 when every id fits (vocabularies up to 65,536 entries), else uint32."""
    return np.dtype(np.uint16 if len(tokenizer) <= 1 << 16 else np.uint32)


def _encode_texts(texts: list[str]) -> EncodedChunk:
    """Token ids of `texts`, each document followed by the separator ids."""
    tokenizer, after_doc = _shared["tokenizer"], _shared["after_doc"]
    segment, characters = _shared.get("segment"), _shared.get("characters")
    if segment is None or characters is not None:  # no offsets needed: the faster encoder
        encodings = tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    else:
        encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    ids = [e.ids for e in encodings]
    column = pa.array(texts, type=pa.large_string())
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
    flat = np.fromiter(chain.from_iterable(ids), dtype=_shared["dtype"], count=int(lengths.sum()))
    if segment is None:
        return EncodedChunk(flat, lengths, stats)
    if characters is not None:
        table, rule = characters
        return EncodedChunk(
            flat, lengths, stats, words.flags_from_characters(flat, table, rule, segment)
        )
    counts = lengths - len(after_doc)
    offsets = chain.from_iterable(e.offsets for e in encodings)
    starts = np.fromiter(map(itemgetter(0), offsets), dtype=np.int64, count=int(counts.sum()))
    continues = np.zeros(len(flat), dtype=np.uint8)  # separators continue nothing
    text_tokens = np.arange(len(starts)) + np.repeat(np.arange(len(texts)) * len(after_doc), counts)
    continues[text_tokens] = words.continuation_flags(texts, starts, counts, segment)
    return EncodedChunk(flat, lengths, stats, continues)


def _chunks(batches: Iterable[list[str]]) -> Iterator[list[str]]:
    """Batches regrouped into lists of about CHUNK_CHARS characters."""
    chunk: list[str] = []
    size = 0
    for batch in batches:
        for text in batch:
            chunk.append(text)
            size += len(text)
            if size >= CHUNK_CHARS:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


def encode_batches(
    batches: Iterable[list[str]],
    tokenizer: PreTrainedTokenizerFast,
    after_doc: list[int],
    *,
    num_proc: int | None = None,
    segment: words.Segment | None = None,
) -> Iterator[EncodedChunk]:
    """Encoded chunks of a stream of text batches, in order, with bounded memory;
    `segment` (a word segmenter) adds each token's word-continuation flag.

    A corpus of one chunk is encoded in-process (the Rust batch encoder uses every core).
    Larger ones go to forked workers that each encode whole chunks on one thread, which
    also spreads the Python-side work (turning encodings into arrays) that a single process
    would do on one core; at most TASKS_AHEAD chunks per worker are in flight.
    """
    chunks = _chunks(batches)
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    workers = num_proc or os.cpu_count() or 1
    _shared.update(
        tokenizer=tokenizer, after_doc=after_doc, dtype=token_dtype(tokenizer), segment=segment
    )
    if segment is not None:
        table = words.character_table(tokenizer)
        if table is not None:
            _shared["characters"] = table, words.vocabulary_rule(tokenizer)
    try:
        if second is None or workers == 1 or "fork" not in mp.get_all_start_methods():
            for chunk in chain([first], [second] if second else [], chunks):
                yield _encode_texts(chunk)
            return
        with _single_threaded_tokenizers(), mp.get_context("fork").Pool(workers) as pool:
            pending: deque = deque()
            for chunk in chain([first, second], chunks):
                pending.append(pool.apply_async(_encode_texts, (chunk,)))
                if len(pending) > TASKS_AHEAD * workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
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


def count_tokens(
    batches: Iterable[list[str]], tokenizer: PreTrainedTokenizerFast, *, num_proc=None
) -> EncodeStats:
    """Encode the corpus once only to measure it (tokens, unknown rate, throughput)."""
    started = time.perf_counter()
    total = EncodeStats()
    for chunk in encode_batches(batches, tokenizer, [], num_proc=num_proc):
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


def block_features(
    seq_len: int, tokenizer: PreTrainedTokenizerFast, *, segmented: bool = False
) -> datasets.Features:
    value = datasets.Value(token_dtype(tokenizer).name)
    features = {"input_ids": datasets.List(value, length=seq_len)}
    if segmented:
        features[words.COLUMN] = datasets.List(datasets.Value("uint8"), length=seq_len)
    return datasets.Features(features)


def _as_blocks(stream: np.ndarray, count: int, body: int, head: list, tail: list) -> pa.Array:
    """The first `count` pieces of `body` values of `stream`, each between `head` and
    `tail`, as one fixed-size list per block."""
    blocks = stream[: count * body].reshape(count, body)
    if head or tail:
        blocks = np.hstack(
            [
                np.tile(np.array(head, blocks.dtype), (count, 1)),
                blocks,
                np.tile(np.array(tail, blocks.dtype), (count, 1)),
            ]
        )
    return pa.FixedSizeListArray.from_arrays(pa.array(blocks.reshape(-1)), blocks.shape[1])


def pack_into_blocks(
    batches: Iterable[list[str]],
    tokenizer: PreTrainedTokenizerFast,
    seq_len: int,
    layout: Layout,
    folder: Path,
    *,
    num_proc: int | None = None,
    max_tokens: int | None = None,
    shard_bytes: int = 256 << 20,
    segmenter: str | None = None,
) -> EncodeStats:
    """Encode a stream of text batches and write it to `folder` as blocks, as they fill.

    `max_tokens` stops once that many tokens (whole blocks) are written; the rest of the
    stream is not read. Only the final partial block is dropped. `segmenter` ("jieba") adds
    the `word_continues` column.
    """
    after_doc, head, tail = _separator_ids(tokenizer, layout)
    body = seq_len - len(head) - len(tail)
    limit = max_tokens // seq_len if max_tokens else None
    if limit == 0:
        raise UserError(
            f"data.max_tokens ({max_tokens:,}) is less than one block of {seq_len} tokens",
            "raise data.max_tokens or lower data.seq_len",
        )
    started = time.perf_counter()
    stats = EncodeStats(word_segmenter=segmenter)
    segment = words.jieba() if segmenter == "jieba" else None
    features = block_features(seq_len, tokenizer, segmented=segment is not None)
    writer = ShardWriter(folder, features, shard_bytes)
    carry = np.empty(0, dtype=token_dtype(tokenizer))
    carry_flags = np.empty(0, dtype=np.uint8)
    chunks = encode_batches(batches, tokenizer, after_doc, num_proc=num_proc, segment=segment)
    for chunk in chunks:
        stats.add(chunk.stats)
        stream = np.concatenate([carry, chunk.ids])
        count = len(stream) // body
        if limit is not None:
            count = min(count, limit - writer.rows)
        columns = {"input_ids": _as_blocks(stream, count, body, head, tail)}
        carry = stream[count * body :]
        if chunk.continues is not None:
            flags = np.concatenate([carry_flags, chunk.continues])
            # [CLS]/[SEP] are special tokens, never masked: their flags do not matter
            edges = [0] * len(head), [0] * len(tail)
            columns[words.COLUMN] = _as_blocks(flags, count, body, *edges)
            carry_flags = flags[count * body :]
        writer.write(pa.table(columns))
        if limit is not None and writer.rows >= limit:
            break
    stats.dropped_tokens = len(carry)
    stats.blocks = writer.rows
    if stats.blocks == 0:
        raise UserError(
            f"the corpus ({stats.tokens:,} tokens) is too small for one block of {seq_len} tokens",
            "use more text or a smaller data.seq_len",
        )
    writer.finish()
    stats.seconds = time.perf_counter() - started
    return stats


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
    """A complete cache entry, memory-mapped; None when there is none."""
    folder = cache_dir / "blocks" / fingerprint
    stats_file = folder / STATS_FILE
    if not stats_file.is_file():  # written last: its presence means the entry is complete
        return None
    return datasets.load_from_disk(str(folder)), EncodeStats(**json.loads(stats_file.read_text()))


def write_stats(folder: Path, stats: EncodeStats) -> None:
    """The last file of a cache entry: its presence marks the entry complete."""
    (folder / STATS_FILE).write_text(json.dumps(asdict(stats)))

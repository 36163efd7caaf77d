"""From a recipe's data section to clean text, and to packed blocks (cached).

The one path every command takes to its training text: `tokenize` and both pretraining
commands stream the corpus through `corpus_rows` (read, cleaned, batch by batch), train a
tokenizer on `tokenizer_sample`, and get their blocks from `packed_blocks`, so a corpus
packed once is reused. Nothing here holds the whole corpus, except a corpus small enough to
fit the tokenizer's sample budget, which is then read once and reused for packing.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerFast

from llmkit.console import stream_progress
from llmkit.data import words
from llmkit.data.cleaning import CleaningReport, RowCleaner
from llmkit.data.nsp import build_sentence_pairs
from llmkit.data.packing import (
    EncodeStats,
    Layout,
    blocks_fingerprint,
    count_tokens,
    default_cache_dir,
    load_cached_blocks,
    pack_into_blocks,
    tokenizer_fingerprint,
    write_stats,
)
from llmkit.data.sampling import Sample, sample_rows
from llmkit.data.shards import new_entry
from llmkit.data.sources import ResolvedSource, corpus_source
from llmkit.data.streams import RowStream, open_rows
from llmkit.errors import UserError
from llmkit.recipe import DataConfig


@dataclass
class CorpusRows:
    """A source's cleaned rows as a stream; `cleaning` is complete once it is exhausted."""

    source: ResolvedSource
    batches: Iterator[list[str]]
    cleaning: CleaningReport


def corpus_rows(data: DataConfig, src: str, *, split: str, what: str) -> CorpusRows:
    """SRC's text rows, read once as a stream and cleaned by the recipe's rules, with a
    progress bar (`what` names the pass) showing MB read, MB/s and the time left."""
    source = corpus_source(data, src, split)
    stream = open_rows(
        source,
        data.text_column,
        split=split,
        src=src,
        streaming=data.streaming,
        max_chars=data.clean.max_chars,
    )
    cleaner = RowCleaner(data.clean)

    def cleaned() -> Iterator[list[str]]:
        kept = 0
        with stream_progress(f"{what} {split}", stream.progress) as advance:
            for batch in stream.batches:
                rows = cleaner(batch)
                kept += len(rows)
                advance()
                if rows:
                    yield rows
        cleaner.skipped_long(stream.progress.skipped_long)
        if kept == 0:
            raise _nothing_left(stream, cleaner.report, data)

    return CorpusRows(source, cleaned(), cleaner.report)


def _nothing_left(stream: RowStream, report: CleaningReport, data: DataConfig) -> UserError:
    if report.rows_in == 0:
        return UserError(f"data source {stream.source.description} is empty")
    return UserError(
        f"data source {stream.source.description} has no text left after cleaning "
        f"({report.rows_in:,} rows: {report.dropped_short:,} blank or shorter than "
        f"{data.clean.min_chars} chars, {report.dropped_long:,} too long, "
        f"{report.dropped_duplicate:,} duplicates)",
        "check the file, or relax data.clean.min_chars / data.clean.max_chars",
    )


@dataclass
class TextSample:
    """What a tokenizer is trained on: rows drawn evenly within the byte budget."""

    sample: Sample
    source: ResolvedSource
    cleaning: CleaningReport  # of the whole corpus (the sample pass read all of it)

    def summary(self) -> dict[str, object]:
        return {
            "tokenizer_train_bytes": self.sample.bytes,
            "tokenizer_train_rows": len(self.sample.rows),
            "tokenizer_train_whole_corpus": self.sample.complete,
        }


def tokenizer_sample(data: DataConfig, budget: int | None, *, seed: int) -> TextSample:
    """One pass over the training corpus, keeping a uniform sample of `budget` bytes."""
    rows = corpus_rows(data, data.train, split="train", what="sample")
    sample = sample_rows(rows.batches, budget, seed=seed)
    return TextSample(sample, rows.source, rows.cleaning)


def measure_corpus(
    data: DataConfig, tokenizer: PreTrainedTokenizerFast, reuse: TextSample | None = None
) -> tuple[EncodeStats, CleaningReport]:
    """Encode the training corpus only to count tokens, unknowns and throughput."""
    if reuse is not None and reuse.sample.complete:
        return count_tokens(reuse.sample.batches(), tokenizer, num_proc=data.num_proc), (
            reuse.cleaning
        )
    rows = corpus_rows(data, data.train, split="train", what="encode")
    return count_tokens(rows.batches, tokenizer, num_proc=data.num_proc), rows.cleaning


@dataclass
class PackedBlocks:
    blocks: datasets.Dataset  # `input_ids`, each exactly seq_len long, memory-mapped
    stats: EncodeStats
    path: str  # the cache folder (a `save_to_disk` layout of Arrow shards)
    reused: bool
    cleaning: CleaningReport | None  # None when reused: the corpus was not read again


def packed_blocks(
    data: DataConfig,
    src: str,
    tokenizer: PreTrainedTokenizerFast,
    layout: Layout,
    *,
    split: str,
    reuse: TextSample | None = None,
    seed: int = 0,
    segmenter: str | None = None,
) -> PackedBlocks:
    """The corpus at `src` as packed blocks, from the cache when the same inputs were packed.

    `reuse` is a sample of the same source already read by the caller: when it holds the
    whole corpus it is packed instead of reading the source again.
    `seed` draws the random second segments of next-sentence pairs (layout "nsp").
    `segmenter`: whole-word masking's objective.segmenter (None: no whole-word masking),
    resolved on the start of the text (words.choose_segmenter).
    """
    source = corpus_source(data, src, split)
    fingerprint = blocks_fingerprint(
        corpus=source.fingerprint,
        text_column=data.text_column,
        clean=data.clean.model_dump(),
        tokenizer=tokenizer_fingerprint(tokenizer),
        seq_len=data.seq_len,
        layout=layout,
        seed=seed if layout == "nsp" else None,
        max_tokens=data.max_tokens,
        segmenter=segmenter,
    )
    cache_dir = default_cache_dir(data.cache_dir)
    folder = cache_dir / "blocks" / fingerprint
    cached = load_cached_blocks(cache_dir, fingerprint)
    if cached is not None:
        blocks, stats = cached
        return PackedBlocks(blocks, stats, str(folder), True, None)
    if reuse is not None and reuse.sample.complete and reuse.source == source:
        batches, cleaning = reuse.sample.batches(), reuse.cleaning
    else:
        rows = corpus_rows(data, src, split=split, what="encode + pack")
        batches, cleaning = rows.batches, rows.cleaning
    what = f"the packed blocks of {src}"
    with closing(batches), new_entry(folder.parent, fingerprint, what=what) as staging:
        if segmenter is not None:
            start, batches = words.peek_text(batches)
            segmenter = words.choose_segmenter(segmenter, start, nsp=layout == "nsp")
        if layout == "nsp":
            pairs, stats = build_sentence_pairs(
                batches, tokenizer, data.seq_len, seed=seed, num_proc=data.num_proc
            )
            pairs.save_to_disk(str(staging))
        else:
            stats = pack_into_blocks(
                batches,
                tokenizer,
                data.seq_len,
                layout,
                staging,
                num_proc=data.num_proc,
                max_tokens=data.max_tokens,
                shard_bytes=int(data.shard_mb * 1e6),
                segmenter=segmenter,
            )
        write_stats(staging, stats)
    blocks, stats = load_cached_blocks(cache_dir, fingerprint)
    return PackedBlocks(blocks, stats, str(folder), False, cleaning)


def peak_memory_mib() -> float:
    """The largest resident memory of this process or any of its finished workers."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, workers) / 1024, 1)


def cache_disk_mib(path: str) -> float:
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20, 2)

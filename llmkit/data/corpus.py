"""From a recipe's data section to a clean text corpus, and to packed blocks (cached).

The one path every command takes to its training text: `tokenize` and both pretraining
commands call `load_text_corpus` and `packed_blocks`, so a corpus packed once is reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
from transformers import PreTrainedTokenizerFast

from llmkit.console import progress_bar
from llmkit.data.cleaning import CleaningReport, clean_corpus
from llmkit.data.nsp import build_sentence_pairs
from llmkit.data.packing import (
    EncodeStats,
    Layout,
    blocks_fingerprint,
    count_tokens,
    default_cache_dir,
    load_cached_blocks,
    pack_into_blocks,
    save_cached_blocks,
    tokenizer_fingerprint,
)
from llmkit.data.sources import ResolvedSource, load_source, resolve_source, select_text
from llmkit.errors import UserError
from llmkit.recipe import DataConfig


@dataclass
class TextCorpus:
    texts: datasets.Dataset  # one `text` column, cleaned
    source: ResolvedSource
    cleaning: CleaningReport


def load_text_corpus(data: DataConfig, src: str, *, split: str) -> TextCorpus:
    dataset, source = load_source(
        src, split=split, local_dir=data.local_dir, num_proc=data.num_proc
    )
    texts = select_text(dataset, data.text_column, where=source.description)
    texts, report = clean_corpus(texts, data.clean, num_proc=data.num_proc)
    if len(texts) == 0:
        raise UserError(
            f"data source {source.description} has no text left after cleaning "
            f"({report.rows_in:,} rows: {report.dropped_short:,} blank or shorter than "
            f"{data.clean.min_chars} chars, {report.dropped_long:,} too long, "
            f"{report.dropped_duplicate:,} duplicates)",
            "check the file, or relax data.clean.min_chars / data.clean.max_chars",
        )
    return TextCorpus(texts, source, report)


def measure_corpus(corpus: TextCorpus, tokenizer: PreTrainedTokenizerFast, data: DataConfig):
    """Encode the corpus only to count tokens, unknowns and throughput."""
    with progress_bar() as progress:
        task = progress.add_task("encode", total=len(corpus.texts))
        return count_tokens(
            corpus.texts,
            tokenizer,
            num_proc=data.num_proc,
            on_rows=lambda n: progress.advance(task, n),
        )


@dataclass
class PackedBlocks:
    blocks: datasets.Dataset  # `input_ids`, each exactly seq_len long
    stats: EncodeStats
    path: str  # the cache folder (a `save_to_disk` dataset)
    reused: bool
    cleaning: CleaningReport | None  # None when reused: the corpus was not read again


def packed_blocks(
    data: DataConfig,
    src: str,
    tokenizer: PreTrainedTokenizerFast,
    layout: Layout,
    *,
    split: str,
    corpus: TextCorpus | None = None,
    seed: int = 0,
) -> PackedBlocks:
    """The corpus at `src` as packed blocks, from the cache when the same inputs were packed.

    `corpus` is the same source already loaded by the caller, to avoid reading it twice.
    `seed` draws the random second segments of next-sentence pairs (layout "nsp").
    """
    source = resolve_source(src, split=split, local_dir=data.local_dir)
    fingerprint = blocks_fingerprint(
        corpus=source.fingerprint,
        text_column=data.text_column,
        clean=data.clean.model_dump(),
        tokenizer=tokenizer_fingerprint(tokenizer),
        seq_len=data.seq_len,
        layout=layout,
        seed=seed if layout == "nsp" else None,
    )
    cache_dir = default_cache_dir(data.cache_dir)
    cached = load_cached_blocks(cache_dir, fingerprint)
    if cached is not None:
        blocks, stats = cached
        return PackedBlocks(blocks, stats, str(cache_dir / "blocks" / fingerprint), True, None)
    corpus = corpus or load_text_corpus(data, src, split=split)
    with progress_bar() as progress:
        task = progress.add_task(f"encode + pack {split}", total=len(corpus.texts))
        options = dict(num_proc=data.num_proc, on_rows=lambda n: progress.advance(task, n))
        if layout == "nsp":
            blocks, stats = build_sentence_pairs(
                corpus.texts, tokenizer, data.seq_len, seed=seed, **options
            )
        else:
            blocks, stats = pack_into_blocks(
                corpus.texts, tokenizer, data.seq_len, layout, **options
            )
    path = save_cached_blocks(cache_dir, fingerprint, blocks, stats)
    return PackedBlocks(blocks, stats, str(path), False, corpus.cleaning)

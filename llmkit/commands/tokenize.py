"""`llmkit tokenize`: train a tokenizer on a corpus, measure it, optionally pack the corpus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from llmkit.data.corpus import (
    cache_disk_mib,
    measure_corpus,
    packed_blocks,
    peak_memory_mib,
    tokenizer_sample,
)
from llmkit.recipe import Recipe
from llmkit.rundir import Card, Run
from llmkit.tokenizer import (
    load_tokenizer,
    resolve_style,
    train_tokenizer_on,
    vocabulary_shortfall,
)


def run_tokenize(
    recipe: Recipe, *, output_dir: Path | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Train (or load) the recipe's tokenizer, save it with its stats; returns the summary."""
    run = Run.start(recipe, "tokenize", output_dir=output_dir, overwrite=overwrite, resumable=False)
    started = time.perf_counter()
    corpus = None
    if recipe.tokenizer.path:
        tokenizer = load_tokenizer(recipe.tokenizer.path)
    else:
        corpus = tokenizer_sample(recipe.data, recipe.tokenizer.train_bytes, seed=recipe.seed)
        tokenizer = train_tokenizer_on(corpus.sample, recipe.tokenizer)
    train_seconds = time.perf_counter() - started

    layout = "mlm" if tokenizer.cls_token_id is not None else "clm"
    metrics = run.summary(
        tokenizer=(
            f"loaded from {recipe.tokenizer.path}"
            if recipe.tokenizer.path
            else f"{recipe.tokenizer.type}, {resolve_style(recipe.tokenizer)} special tokens"
        ),
        vocab_size=len(tokenizer),
        **(vocabulary_shortfall(tokenizer, recipe.tokenizer) if corpus else {}),
        train_seconds=round(train_seconds, 3),
        **(corpus.summary() if corpus else {}),
    )
    # Packing writes only to the block cache, and may still find a user error (a corpus too
    # small for one block), so it happens before the run directory is claimed.
    if recipe.data.encode:
        packed = packed_blocks(
            recipe.data, recipe.data.train, tokenizer, layout, split="train", reuse=corpus
        )
        stats = packed.stats
        cleaning = corpus.cleaning if corpus else packed.cleaning  # None: blocks were cached
        metrics.update(
            blocks=stats.blocks,
            seq_len=recipe.data.seq_len,
            layout=layout,
            blocks_path=packed.path,
            blocks_reused=packed.reused,
            dropped_tokens=stats.dropped_tokens,
            blocks_disk_mib=cache_disk_mib(packed.path),
        )
        if recipe.data.validation:
            validation = packed_blocks(
                recipe.data, recipe.data.validation, tokenizer, layout, split="validation"
            )
            metrics.update(
                validation_blocks=validation.stats.blocks, validation_blocks_path=validation.path
            )
    else:
        stats, cleaning = measure_corpus(recipe.data, tokenizer, reuse=corpus)
    metrics.update(**(cleaning.as_dict() if cleaning else {}))
    metrics.update(
        documents=stats.documents,
        characters=stats.characters,
        tokens=stats.tokens,
        chars_per_token=round(stats.chars_per_token, 4),
        unknown_rate=stats.unknown_rate,
        encode_mb_per_s=round(stats.megabytes_per_second, 3),
        peak_rss_mib=peak_memory_mib(),
    )

    run.claim()
    card = Card(
        title=f"Tokenizer: {recipe.name}",
        what=f"A tokenizer ({metrics['tokenizer']}; {metrics['vocab_size']:,} entries). "
        f'Load it with `AutoTokenizer.from_pretrained("{run.dir}")`.',
        results={
            k: metrics[k] for k in ("vocab_size", "tokens", "chars_per_token", "unknown_rate")
        },
    )
    return run.finish(metrics, card, tokenizer=tokenizer)

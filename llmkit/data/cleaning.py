"""Corpus cleaning: Unicode normalisation, short/long row removal, exact de-duplication.

Works on a dataset with one `text` column and reports how many rows each rule dropped, so
that a user sees what happened to their corpus. Length and duplicate checks run vectorised
on the Arrow column (no Python loop over rows).
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

import datasets
import numpy as np
import pyarrow.compute as pc

from llmkit.recipe import CleaningConfig


@dataclass
class CleaningReport:
    rows_in: int = 0
    dropped_short: int = 0
    dropped_long: int = 0
    dropped_duplicate: int = 0
    rows_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def clean_corpus(
    dataset: datasets.Dataset, config: CleaningConfig, *, num_proc: int | None = None
) -> tuple[datasets.Dataset, CleaningReport]:
    report = CleaningReport(rows_in=len(dataset))
    if config.normalize:
        form = config.normalize
        dataset = dataset.map(
            lambda batch: {"text": [unicodedata.normalize(form, t) for t in batch["text"]]},
            batched=True,
            num_proc=num_proc if num_proc and len(dataset) > 50_000 else None,
            desc=f"Unicode {form}",
        )
    texts = dataset.data.column("text")
    keep = np.ones(len(dataset), dtype=bool)
    if config.min_chars > 0:
        stripped_len = pc.utf8_length(pc.utf8_trim_whitespace(texts)).to_numpy(zero_copy_only=False)
        short = stripped_len < config.min_chars
        report.dropped_short = int(short.sum())
        keep &= ~short
    if config.max_chars is not None:
        long = pc.utf8_length(texts).to_numpy(zero_copy_only=False) > config.max_chars
        report.dropped_long = int((long & keep).sum())
        keep &= ~long
    if config.dedup:
        # Among the rows still kept, pandas hashes the column in C and keeps each first copy.
        kept_index = np.flatnonzero(keep)
        repeated = texts.take(kept_index).to_pandas().duplicated(keep="first").to_numpy()
        report.dropped_duplicate = int(repeated.sum())
        keep[kept_index[repeated]] = False
    if not keep.all():
        dataset = dataset.select(np.flatnonzero(keep))
    report.rows_out = len(dataset)
    return dataset, report

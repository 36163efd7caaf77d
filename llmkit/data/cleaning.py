"""Corpus cleaning: Unicode normalisation, short/long row removal, exact de-duplication.

Cleans a corpus batch by batch, as it is streamed, and reports how many rows each rule
dropped, so that a user sees what happened to their corpus. Length and duplicate checks run
vectorised on an Arrow copy of the batch (no Python loop over rows). De-duplication keeps a
64-bit hash of every distinct row seen: 8 bytes per row, the one part of reading a corpus
whose memory grows with it (only when `dedup` is on).
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
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


class SeenHashes:
    """Hashes of the rows seen so far, as sorted arrays of halving sizes (a binary counter
    of merges): adding n rows costs O(n log n) in all, and a lookup one search per array."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def _contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for level in self.levels:
            at = np.minimum(np.searchsorted(level, hashes), len(level) - 1)
            found |= level[at] == hashes
        return found

    def first_seen(self, hashes: np.ndarray) -> np.ndarray:
        """True where a hash occurs for the first time, in this batch and ever; remembers them."""
        unique, first_index = np.unique(hashes, return_index=True)
        new = ~self._contains(unique)
        mask = np.zeros(len(hashes), dtype=bool)
        mask[first_index[new]] = True
        level = unique[new]
        while self.levels and len(self.levels[-1]) <= len(level):
            level = np.union1d(self.levels.pop(), level)
        if len(level):
            self.levels.append(level)
        return mask


class RowCleaner:
    """Applies a CleaningConfig to batches of rows, in order, accumulating one report."""

    def __init__(self, config: CleaningConfig) -> None:
        self.config = config
        self.report = CleaningReport()
        self.seen = SeenHashes() if config.dedup else None

    def __call__(self, rows: list[str]) -> list[str]:
        config, report = self.config, self.report
        report.rows_in += len(rows)
        if config.normalize:
            rows = [unicodedata.normalize(config.normalize, row) for row in rows]
        texts = pa.array(rows, type=pa.large_string())
        keep = np.ones(len(rows), dtype=bool)
        if config.min_chars > 0:
            stripped = pc.utf8_length(pc.utf8_trim_whitespace(texts)).to_numpy(zero_copy_only=False)
            short = stripped < config.min_chars
            report.dropped_short += int(short.sum())
            keep &= ~short
        if config.max_chars is not None:
            long = pc.utf8_length(texts).to_numpy(zero_copy_only=False) > config.max_chars
            report.dropped_long += int((long & keep).sum())
            keep &= ~long
        if self.seen is not None:
            # Among the rows still kept, pandas hashes the strings in C; the first copy stays.
            kept_index = np.flatnonzero(keep)
            hashes = pd.util.hash_array(np.asarray([rows[i] for i in kept_index], dtype=object))
            repeated = ~self.seen.first_seen(hashes)
            report.dropped_duplicate += int(repeated.sum())
            keep[kept_index[repeated]] = False
        kept = rows if keep.all() else [rows[i] for i in np.flatnonzero(keep)]
        report.rows_out += len(kept)
        return kept

    def skipped_long(self, count: int) -> None:
        """Rows the reader skipped unread because they were far longer than max_chars."""
        self.report.rows_in += count
        self.report.dropped_long += count

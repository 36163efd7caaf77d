"""A byte budget of rows drawn evenly across a stream: what a tokenizer is trained on.

`tokenizers` trainers hold counts of every distinct word they are fed, and a large corpus
fed whole is a known way to exhaust memory. A uniform sample of rows is just as good for
learning merges. The stream's length is not known in advance (compressed files, hub
streams), so the sample is drawn in one pass: every row gets a random key, and the rows with
the smallest keys that fit the budget are kept (a bottom-k sample by key, which is uniform
over rows). A corpus within the budget is kept whole, in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Rows beyond the budget are dropped once the sample outgrows it by this factor, so that
# pruning (a sort of the sample's keys) runs a few times, not once per batch.
PRUNE_AT = 1.25


@dataclass
class Sample:
    rows: list[str]  # in corpus order
    bytes: int  # UTF-8 bytes of the rows
    complete: bool  # every row of the stream is in it

    def batches(self, size: int = 10_000) -> Iterator[list[str]]:
        for start in range(0, len(self.rows), size):
            yield self.rows[start : start + size]


def sample_rows(batches: Iterable[list[str]], budget: int | None, *, seed: int) -> Sample:
    """Rows of `batches` totalling at most `budget` UTF-8 bytes, drawn uniformly (all of
    them when `budget` is None or the stream fits)."""
    rng = np.random.default_rng(seed)
    rows: list[str] = []
    keys: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    threshold, held, complete = 1.0, 0, True
    for batch in batches:
        if not batch:
            continue
        batch_sizes = pc.binary_length(pa.array(batch, type=pa.large_string())).to_numpy()
        batch_keys = rng.random(len(batch))
        take = batch_keys < threshold
        if not take.all():
            complete = False
            batch = [batch[i] for i in np.flatnonzero(take)]
            batch_keys, batch_sizes = batch_keys[take], batch_sizes[take]
        rows.extend(batch)
        keys.append(batch_keys)
        sizes.append(batch_sizes)
        held += int(batch_sizes.sum())
        if budget is not None and held > PRUNE_AT * budget:
            rows, keys, sizes, held, threshold = _prune(rows, keys, sizes, budget)
            complete = False
    if budget is not None and held > budget:
        rows, keys, sizes, held, _ = _prune(rows, keys, sizes, budget)
        complete = False
    return Sample(rows, held, complete)


def _prune(rows, keys, sizes, budget):
    """Keep the smallest-key rows that fit `budget`, in their order; the first key left out
    becomes the threshold no later row can pass."""
    all_keys, all_sizes = np.concatenate(keys), np.concatenate(sizes)
    by_key = np.argsort(all_keys, kind="stable")
    fits = int(np.searchsorted(np.cumsum(all_sizes[by_key]), budget, side="right"))
    threshold = float(all_keys[by_key[fits]]) if fits < len(by_key) else 1.0
    kept = np.sort(by_key[:fits])
    return (
        [rows[i] for i in kept],
        [all_keys[kept]],
        [all_sizes[kept]],
        int(all_sizes[kept].sum()),
        threshold,
    )

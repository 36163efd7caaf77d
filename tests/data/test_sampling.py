import numpy as np

from llmkit.data.sampling import sample_rows


def numbered_rows(count, width=20):
    return [f"row {i:08d} ".ljust(width, ".") for i in range(count)]


def in_batches(rows, size=1000):
    return (rows[i : i + size] for i in range(0, len(rows), size))


def test_a_corpus_within_the_budget_is_kept_whole_and_in_order(builtin_rows):
    sample = sample_rows(in_batches(builtin_rows), 10**9, seed=0)
    assert sample.complete and sample.rows == builtin_rows
    assert sample.bytes == sum(len(r.encode()) for r in builtin_rows)
    assert sample_rows(in_batches(builtin_rows), None, seed=0).rows == builtin_rows


def test_the_sample_fits_the_budget_and_is_drawn_evenly():
    rows = numbered_rows(200_000)  # 4 MB
    sample = sample_rows(in_batches(rows), 400_000, seed=3)
    assert not sample.complete
    assert 0.97 * 400_000 < sample.bytes <= 400_000 == 20 * 20_000
    assert sample.bytes == sum(len(r) for r in sample.rows)
    positions = np.array([int(r.split()[1].rstrip(".")) for r in sample.rows])
    assert (np.diff(positions) > 0).all()  # corpus order
    quarters = np.bincount(positions * 4 // len(rows), minlength=4) / len(positions)
    assert np.abs(quarters - 0.25).max() < 0.02  # not the first 10% of the corpus: all of it
    again = sample_rows(in_batches(rows, size=777), 400_000, seed=3)
    assert again.rows == sample.rows  # the same rows whatever the batching
    assert sample_rows(in_batches(rows), 400_000, seed=4).rows != sample.rows

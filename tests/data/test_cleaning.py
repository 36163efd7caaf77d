import numpy as np

from llmkit.data.cleaning import RowCleaner, SeenHashes
from llmkit.recipe import CleaningConfig


def clean(rows, config, batch=3):
    """Rows cleaned in batches of `batch`, as a stream is: (kept rows, report)."""
    cleaner = RowCleaner(config)
    kept = [row for i in range(0, len(rows), batch) for row in cleaner(rows[i : i + batch])]
    return kept, cleaner.report


def test_each_rule_drops_what_it_names_and_reports_it():
    rows = ["keep me", "  ", "", "x", "keep me", "a" * 50, "second keeper", "second keeper"]
    cleaned, report = clean(rows, CleaningConfig(min_chars=2, max_chars=40, dedup=True))
    assert cleaned == ["keep me", "second keeper"]
    assert report.as_dict() == {
        "rows_in": 8,
        "dropped_short": 3,
        "dropped_long": 1,
        "dropped_duplicate": 2,
        "rows_out": 2,
    }


def test_defaults_only_drop_blank_rows():
    rows = [" = Title = ", " ", "", "a", "a"]
    cleaned, report = clean(rows, CleaningConfig())
    assert cleaned == [" = Title = ", "a", "a"] and report.dropped_short == 2


def test_unicode_normalisation_makes_equal_text_equal():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    cleaned, report = clean([composed, decomposed], CleaningConfig(normalize="NFC", dedup=True))
    assert cleaned == [composed] and report.dropped_duplicate == 1
    untouched, _ = clean([composed, decomposed], CleaningConfig(dedup=True))
    assert len(untouched) == 2


def test_duplicates_of_dropped_rows_do_not_count():
    rows = ["a" * 10, "a" * 10, "b"]
    _, report = clean(rows, CleaningConfig(max_chars=5, dedup=True))
    assert (report.dropped_long, report.dropped_duplicate, report.rows_out) == (2, 0, 1)


def test_dedup_across_batches_keeps_each_first_copy_like_a_set(builtin_rows):
    rng = np.random.default_rng(0)
    rows = [builtin_rows[i] for i in rng.integers(0, 500, size=3000)]
    cleaned, report = clean(rows, CleaningConfig(dedup=True), batch=97)
    expected = list(dict.fromkeys(rows))
    assert cleaned == expected and report.dropped_duplicate == len(rows) - len(expected)


def test_seen_hashes_answers_as_a_set_does():
    rng = np.random.default_rng(1)
    seen, reference = SeenHashes(), set()
    for size in rng.integers(1, 400, size=60):
        hashes = rng.integers(0, 2_000, size=size).astype(np.uint64)
        first = seen.first_seen(hashes)
        expected = []
        for h in hashes.tolist():
            expected.append(h not in reference)
            reference.add(h)
        assert first.tolist() == expected
    assert sum(map(len, seen.levels)) == len(reference) and len(seen.levels) <= 12


def test_chinese_rows_are_normalised_and_measured_in_characters():
    rows = ["大规模语言模型，２０２６年！", "训练。", "好", "ＡＢＣ数据集（二）", "训练。"]
    config = CleaningConfig(normalize="NFKC", min_chars=2, max_chars=15, dedup=True)
    cleaned, report = clean(rows, config)
    # full-width letters, digits and punctuation become their ASCII forms; 。 stays (NFKC
    # leaves CJK punctuation alone); lengths count characters, not space-split words
    assert cleaned == ["大规模语言模型,2026年!", "训练。", "ABC数据集(二)"]
    assert (report.dropped_short, report.dropped_long, report.dropped_duplicate) == (1, 0, 1)

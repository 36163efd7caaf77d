import datasets

from llmkit.data.cleaning import clean_corpus
from llmkit.recipe import CleaningConfig


def corpus(rows):
    return datasets.Dataset.from_dict({"text": rows})


def test_each_rule_drops_what_it_names_and_reports_it():
    rows = ["keep me", "  ", "", "x", "keep me", "a" * 50, "second keeper", "second keeper"]
    cleaned, report = clean_corpus(
        corpus(rows), CleaningConfig(min_chars=2, max_chars=40, dedup=True)
    )
    assert cleaned["text"] == ["keep me", "second keeper"]
    assert report.as_dict() == {
        "rows_in": 8,
        "dropped_short": 3,
        "dropped_long": 1,
        "dropped_duplicate": 2,
        "rows_out": 2,
    }


def test_defaults_only_drop_blank_rows():
    rows = [" = Title = ", " ", "", "a", "a"]
    cleaned, report = clean_corpus(corpus(rows), CleaningConfig())
    assert cleaned["text"] == [" = Title = ", "a", "a"] and report.dropped_short == 2


def test_unicode_normalisation_makes_equal_text_equal():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    cleaned, report = clean_corpus(
        corpus([composed, decomposed]), CleaningConfig(normalize="NFC", dedup=True)
    )
    assert cleaned["text"] == [composed] and report.dropped_duplicate == 1
    untouched, _ = clean_corpus(corpus([composed, decomposed]), CleaningConfig(dedup=True))
    assert len(untouched) == 2


def test_duplicates_of_dropped_rows_do_not_count():
    rows = ["a" * 10, "a" * 10, "b"]
    _, report = clean_corpus(corpus(rows), CleaningConfig(max_chars=5, dedup=True))
    assert (report.dropped_long, report.dropped_duplicate, report.rows_out) == (2, 0, 1)

import json

import numpy as np
import pytest
from helpers import FIXTURES as ALL_FIXTURES

from llmkit.errors import UserError
from llmkit.metrics import QaMetric, normalize_squad_answer, squad_token_f1
from llmkit.tasks.qa.data import (
    Windows,
    best_answers,
    prediction_windows,
    read_squad_json,
    training_windows,
)
from llmkit.tokenizer import load_tokenizer

FIXTURES = ALL_FIXTURES / "squad"


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower", "eiffel tower"),  # article and case
        ("an apple, a pear!", "apple pear"),  # both articles, punctuation
        ("  Theory   of  everything ", "theory of everything"),  # whitespace; "the" in a word
        ("U.S.-based", "usbased"),  # punctuation removed, not replaced by a space
        ("A", ""),
    ],
)
def test_squad_normalisation(text, normal):
    assert normalize_squad_answer(text) == normal


def test_exact_match_and_f1_take_the_best_reference():
    # "the 1343 plague" vs "1343": normalised tokens [1343, plague] vs [1343]:
    # precision 1/2, recall 1 → F1 2/3; against "1343 plague" it is exact.
    assert squad_token_f1("the 1343 plague", "1343") == pytest.approx(2 / 3)
    scores = QaMetric(config_name="squad", keep_in_memory=True).compute(
        predictions=["the 1343 plague", "Denver", "nothing"],
        references=[["1343", "1343 plague"], ["Denver Broncos"], ["Carolina"]],
    )
    assert scores["exact_match"] == pytest.approx(100 * 1 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_squad_json_flattens_to_the_hub_columns():
    data = read_squad_json(FIXTURES / "dev.json")
    raw = json.loads((FIXTURES / "dev.json").read_text())
    questions = [qa for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert len(data) == len(questions) == 108
    row = data[0]
    assert set(row) == {"id", "title", "context", "question", "answers"}
    assert row["title"] == "Black_Death"
    assert row["answers"]["text"] == [a["text"] for a in questions[0]["answers"]]
    start = row["answers"]["answer_start"][0]
    assert row["context"][start:].startswith(row["answers"]["text"][0])


def test_a_file_not_in_squad_layout_is_a_user_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('[{"question": "?"}]')
    with pytest.raises(UserError, match="SQuAD's layout"):
        read_squad_json(path)


@pytest.fixture(scope="module")
def tokenizer(trained_mlm):
    return load_tokenizer(trained_mlm)


def test_windows_cover_long_contexts_and_their_labels_point_at_the_answer(tokenizer):
    data = read_squad_json(FIXTURES / "dev.json").select(range(40))
    windows = Windows(max_length=64, stride=16)
    batch = data[:]
    labelled = training_windows(batch, tokenizer, windows)
    located = prediction_windows(batch, tokenizer, windows, batch["id"])
    assert len(labelled["input_ids"]) == len(located["input_ids"]) > len(data)  # long contexts
    assert max(map(len, labelled["input_ids"])) <= 64
    answered = set()
    for index, (start, end) in enumerate(
        zip(labelled["start_positions"], labelled["end_positions"], strict=True)
    ):
        if start == end == 0:
            continue
        key = located["example_id"][index]
        row = data[batch["id"].index(key)]
        offsets = located["offset_mapping"][index]
        span = row["context"][offsets[start][0] : offsets[end][1]]
        # The labelled tokens cover the answer and at most the rest of its edge tokens.
        assert row["answers"]["text"][0] in span
        assert len(span) <= len(row["answers"]["text"][0]) + 12
        answered.add(key)
    # Neighbouring windows share `stride` tokens, so an answer that short always fits whole
    # in one of them (a longer one may straddle every boundary).
    short = {
        row["id"]
        for row in data
        if len(tokenizer(row["answers"]["text"][0], add_special_tokens=False)["input_ids"])
        <= windows.stride
    }
    assert short <= answered and len(short) >= 30


def test_best_answer_is_the_top_scoring_valid_span_across_windows():
    context = "Warsaw is the capital of Poland and its largest city."
    # two windows over the same context; token offsets (None: question or special tokens)
    offsets = [
        [None, None, (0, 6), (7, 9), (10, 13), (14, 21)],
        [None, None, (14, 21), (22, 24), (25, 31), (32, 35)],
    ]
    starts = np.array([[9.0, 9, 1, 0, 0, 0], [9.0, 9, -5, -5, 5, -5]])
    ends = np.array([[9.0, 9, 2, 0, 0, 0], [9.0, 9, -5, -5, 4, 1]])
    found = best_answers({"q": context}, ["q", "q"], offsets, starts, ends, top_k=3)["q"]
    assert [a.text for a in found] == ["Poland", "Poland and", "Warsaw"]
    assert found[0].score == 9.0 and context[found[0].start : found[0].end] == "Poland"
    # spans longer than max_answer_tokens are never chosen
    short = best_answers({"q": context}, ["q", "q"], offsets, starts, ends, max_answer_tokens=1)
    assert short["q"][0].text == "Poland"
    limited = best_answers({"q": context}, ["q"], offsets[:1], starts[:1], ends[:1])
    assert limited["q"][0].text == "Warsaw"  # the question tokens' high scores are ignored


def test_a_stride_too_long_for_the_window_is_a_user_error(tokenizer):
    with pytest.raises(UserError, match="doc_stride"):
        prediction_windows({"question": ["q"], "context": ["c"]}, tokenizer, Windows(64, 32), ["q"])


def test_the_hub_copy_offline_is_a_user_error_naming_the_local_keys():
    from llmkit.tasks.qa import QaKeys
    from llmkit.tasks.qa.data import split_source
    from llmkit.tasks.splits import load_split

    with pytest.raises(UserError, match="offline") as caught:
        load_split(split_source(QaKeys(name="qa/squad")), "validation")
    assert "task.data_dir" in caught.value.hint

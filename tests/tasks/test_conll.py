from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from llmkit.errors import UserError
from llmkit.metrics import EntityMetric
from llmkit.tasks.ner import NerKeys
from llmkit.tasks.ner.data import (
    IGNORED,
    align_labels,
    label_names,
    read_conll,
    split_source,
    word_tags,
)
from llmkit.tasks.splits import load_split
from llmkit.tokenizer import load_tokenizer

CONLL = Path(__file__).parents[1] / "fixtures" / "conll"
NAMES = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_conll_columns_read_as_sentences(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER"  # no final blank line
    )
    data = read_conll(path)
    assert data["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert data["tags"] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert len(read_conll(CONLL / "train.txt")) == 400


def test_a_line_without_tags_is_a_user_error(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(UserError, match=r"x.txt:2 has one column"):
        read_conll(path)


def test_tag_set_puts_o_first_and_b_before_i():
    tags = [["I-PER", "O", "B-PER"], ["B-LOC", "I-LOC", "B-MISC"]]
    assert label_names(tags) == ["O", "B-LOC", "I-LOC", "B-MISC", "B-PER", "I-PER"]


def test_word_labels_go_to_first_sub_tokens():
    # [CLS] New Yor ##k visited [SEP]: words 0 (New) 1 (York, two tokens) 2 (visited)
    word_ids = [None, 0, 1, 1, 2, None]
    labels = [NAMES.index("B-LOC"), NAMES.index("I-LOC"), NAMES.index("O")]
    assert align_labels(word_ids, labels, NAMES, all_subwords=False) == [
        IGNORED,
        1,
        2,
        IGNORED,
        0,
        IGNORED,
    ]
    # Ada (B-PER) split in two: with all sub-words, its second token continues as I-PER
    word_ids = [None, 0, 0, 1, None]
    labels = [NAMES.index("B-PER"), NAMES.index("I-PER")]
    assert align_labels(word_ids, labels, NAMES, all_subwords=True) == [IGNORED, 3, 4, 4, IGNORED]


def test_alignment_with_a_real_tokenizer(trained_mlm):
    tokenizer = load_tokenizer(trained_mlm)
    words = ["Ada", "Lovelace", "visited", "Kyoto", "."]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O"]
    encoded = tokenizer(words, is_split_into_words=True)
    word_ids = encoded.word_ids()
    aligned = align_labels(word_ids, [NAMES.index(t) for t in tags], NAMES, all_subwords=False)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert len(tokens) > len(words) + 2  # some word is split into sub-words
    for token, word, label in zip(tokens, word_ids, aligned, strict=True):
        first = word is not None and word_ids.index(word) == tokens.index(token)
        assert (label != IGNORED) == first
        if first:
            assert NAMES[label] == tags[word]
    # and back: first-token predictions give the words' tags
    assert word_tags(aligned, word_ids, len(words), NAMES) == tags


def test_words_cut_off_by_truncation_are_predicted_outside():
    assert word_tags([IGNORED, 3, 4, IGNORED], [None, 0, 1, None], 4, NAMES) == [
        "B-PER",
        "I-PER",
        "O",
        "O",
    ]


def test_entity_scores_are_seqevals():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-PER"]]
    predictions = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O", "B-PER"]]
    scores = EntityMetric(keep_in_memory=True).compute(
        predictions=predictions, references=references
    )
    # 4 gold entities; predicted: PER "Ada" (wrong boundary), LOC, LOC, PER → 3 of 4 right
    assert scores["precision"] == pytest.approx(precision_score(references, predictions)) == 0.75
    assert scores["recall"] == pytest.approx(recall_score(references, predictions)) == 0.75
    assert scores["f1"] == pytest.approx(f1_score(references, predictions))
    assert scores["accuracy"] == pytest.approx(6 / 7)  # token accuracy is kinder
    assert scores["f1_LOC"] == 1.0 and scores["f1_PER"] == pytest.approx(0.5)


def test_a_hub_copy_with_class_ids_reads_as_tag_strings():
    import datasets

    from llmkit.tasks.ner.data import hub_tags_as_strings

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    hub = datasets.Dataset.from_dict(
        {"id": ["0"], "tokens": [["Ada", "Lovelace", "wrote"]], "ner_tags": [[1, 2, 0]]},
        features=features,
    )
    data = hub_tags_as_strings(hub, "lhoestq/conll2003")
    assert data.column_names == ["tokens", "tags"]
    assert data[0]["tags"] == ["B-PER", "I-PER", "O"]
    with pytest.raises(UserError, match="no tokens and ner_tags"):
        hub_tags_as_strings(hub.remove_columns("ner_tags"), "x")


def test_a_data_dir_in_conlls_layout_gives_each_split():
    source = split_source(NerKeys(name="ner/conll", data_dir=str(CONLL)))

    def load(split):
        return load_split(source, split)

    assert len(load("train")) == 400 and len(load("validation")) == 80
    assert load("test") is None  # absent, not fetched


def test_the_hub_copy_offline_is_a_user_error_naming_the_local_keys():
    with pytest.raises(UserError, match="offline") as caught:
        load_split(split_source(NerKeys(name="ner/conll")), "train")
    assert "task.data_dir" in caught.value.hint

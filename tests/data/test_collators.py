import numpy as np
import pytest
import torch
from helpers import pack_rows

from llmkit.data.collators import build_collator, mask_once
from llmkit.data.nsp import IS_NEXT, RANDOM_NEXT, build_sentence_pairs
from llmkit.data.packing import encode_batches
from llmkit.data.sampling import Sample
from llmkit.recipe import ObjectiveConfig, TokenizerConfig
from llmkit.tokenizer import train_tokenizer_on


@pytest.fixture(scope="module")
def texts(builtin_rows):
    return builtin_rows


@pytest.fixture(scope="module")
def wordpiece(texts):
    sample = Sample(texts, 0, True)
    return train_tokenizer_on(sample, TokenizerConfig(type="wordpiece", vocab_size=2000))


@pytest.fixture(scope="module")
def blocks(texts, wordpiece, tmp_path_factory):
    return pack_rows(texts, wordpiece, 128, "mlm", tmp_path_factory.mktemp("blocks") / "b")[0]


def masked_batches(collator, blocks, count=40, size=32):
    torch.manual_seed(0)
    for start in range(0, count * size, size):
        rows = [blocks[i % len(blocks)] for i in range(start, start + size)]
        original = torch.tensor([r["input_ids"] for r in rows])
        yield original, collator(rows)


def test_masking_selects_15_percent_and_replaces_80_10_10(wordpiece, blocks):
    collator = build_collator("mlm", wordpiece, ObjectiveConfig())
    special = torch.tensor(wordpiece.all_special_ids)
    selected = maskable = as_mask = as_random = kept = 0
    for original, batch in masked_batches(collator, blocks):
        chosen = batch["labels"] != -100
        assert (batch["labels"][chosen] == original[chosen]).all()
        assert not torch.isin(original[chosen], special).any(), "a special token was selected"
        maskable += (~torch.isin(original, special)).sum().item()
        selected += chosen.sum().item()
        inputs = batch["input_ids"][chosen]
        as_mask += (inputs == wordpiece.mask_token_id).sum().item()
        kept += (inputs == original[chosen]).sum().item()
        as_random += (
            ((inputs != wordpiece.mask_token_id) & (inputs != original[chosen])).sum().item()
        )
    assert selected / maskable == pytest.approx(0.15, abs=0.01)
    assert as_mask / selected == pytest.approx(0.80, abs=0.02)
    assert as_random / selected == pytest.approx(0.10, abs=0.02)
    assert kept / selected == pytest.approx(0.10, abs=0.02)


def test_whole_word_masking_selects_every_piece_of_a_word(wordpiece, blocks):
    collator = build_collator("mlm", wordpiece, ObjectiveConfig(whole_word_mask=True))
    vocab = wordpiece.convert_ids_to_tokens(list(range(len(wordpiece))))
    continues = torch.tensor([token.startswith("##") for token in vocab])
    special = torch.tensor(wordpiece.all_special_ids)
    words_split = 0
    for original, batch in masked_batches(collator, blocks, count=10):
        chosen = batch["labels"] != -100
        # A continuation piece is chosen exactly when the piece before it is (a word cut by
        # a block or document boundary, after [CLS]/[SEP], starts afresh).
        follows = continues[original[:, 1:]] & ~torch.isin(original[:, :-1], special)
        assert (chosen[:, 1:][follows] == chosen[:, :-1][follows]).all()
        words_split += (follows & chosen[:, 1:]).sum().item()
        assert (batch["input_ids"][chosen] == wordpiece.mask_token_id).all()
    assert words_split > 0, "no multi-piece word was ever selected: the test saw nothing"


def test_evaluation_masks_are_drawn_once_and_kept(wordpiece, blocks):
    evaluation = blocks.select(range(64))
    first = mask_once(evaluation, wordpiece, ObjectiveConfig(), seq_len=128, seed=1)
    again = mask_once(evaluation, wordpiece, ObjectiveConfig(), seq_len=128, seed=1)
    other = mask_once(evaluation, wordpiece, ObjectiveConfig(), seq_len=128, seed=2)
    assert first["labels"] == again["labels"] and first["labels"] != other["labels"]
    collator = build_collator("mlm", wordpiece, ObjectiveConfig())
    batch = collator([first[i] for i in range(8)])
    assert batch["labels"].tolist() == first["labels"][:8]


def test_sentence_pairs_for_next_sentence_prediction(texts, wordpiece):
    pairs, stats = build_sentence_pairs([texts], wordpiece, 128, seed=0)
    assert len(pairs) == stats.blocks > 500
    labels = np.array(pairs["next_sentence_label"])
    assert 0.45 < (labels == RANDOM_NEXT).mean() < 0.55
    documents = [
        np.asarray(doc, dtype=np.int32).tobytes()
        for chunk in encode_batches([texts], wordpiece, [])
        for doc in np.split(chunk.ids, np.cumsum(chunk.doc_lengths)[:-1])
    ]
    cls, sep = wordpiece.cls_token_id, wordpiece.sep_token_id
    for row in pairs.select(range(200)):
        ids, types = row["input_ids"], row["token_type_ids"]
        assert len(ids) <= 128 and ids[0] == cls and ids[-1] == sep
        middle = ids.index(sep)
        a, b = ids[1:middle], ids[middle + 1 : -1]
        assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        together = np.asarray(a + b, dtype=np.int32).tobytes()
        if row["next_sentence_label"] == IS_NEXT:
            assert any(together in doc for doc in documents)
        else:
            a_bytes = np.asarray(a, dtype=np.int32).tobytes()
            b_bytes = np.asarray(b, dtype=np.int32).tobytes()
            assert not any(a_bytes in doc and b_bytes in doc for doc in documents)


def test_dynamic_padding_equals_transformers_padding_collator(trained_mlm):
    from transformers import DataCollatorWithPadding

    from llmkit.data.collators import DynamicPaddingCollator
    from llmkit.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(trained_mlm)
    pairs = [("a short one", "and its pair"), ("a much longer first sentence here", "b"), ("x", "")]
    features = []
    for label, (first, second) in enumerate(pairs):
        encoded = tokenizer(first, second or None)
        features.append({**encoded, "labels": label})
    for multiple in (1, 8):
        expected = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)(
            [dict(f) for f in features]
        )
        padded = DynamicPaddingCollator(tokenizer, pad_to_multiple_of=multiple)(features)
        assert padded.keys() == expected.keys()
        for key in padded:
            assert torch.equal(padded[key], expected[key]), key
    assert padded["input_ids"].shape[1] % 8 == 0
    scores = [{**f, "labels": float(i) / 3} for i, f in enumerate(features)]  # regression
    assert DynamicPaddingCollator(tokenizer)(scores)["labels"].dtype == torch.float32

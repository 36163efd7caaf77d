"""Whole-word masking of Chinese: words from a segmenter, tokens kept as characters."""

import random

import numpy as np
import pytest
import torch
from helpers import FIXTURES, pack_rows

from llmkit.data import words
from llmkit.data.collators import build_collator, mask_once
from llmkit.data.sampling import Sample
from llmkit.errors import UserError
from llmkit.recipe import ObjectiveConfig, TokenizerConfig
from llmkit.tokenizer import train_tokenizer_on

# Sentences segmented by hand, one word per item.
SEGMENTED = [
    ["大规模", "语言", "模型", "的", "训练", "需要", "大量", "的", "文本", "。"],
    ["春天", "来", "了", "，", "公园", "里", "的", "花", "开", "得", "很", "美", "。"],
    ["北京", "是", "中国", "的", "首都", "，", "也", "是", "一座", "古城", "。"],
    ["图书馆", "在", "周末", "开放", "到", "晚上", "九点", "。"],
    ["科学家", "发现", "适量", "的", "运动", "可以", "改善", "睡眠", "质量", "。"],
    ["全词", "掩码", "同时", "遮盖", "一个", "词", "的", "所有", "汉字", "。"],
    ["长江", "是", "亚洲", "最长", "的", "河流", "，", "流经", "十一个", "省份", "。"],
    ["他", "每天", "早上", "六点", "起床", "跑步", "。"],
]
DICTIONARY = {word for sentence in SEGMENTED for word in sentence}
LONGEST = max(map(len, DICTIONARY))


def by_hand(text: str) -> list[str]:
    """A segmenter that knows SEGMENTED's words (longest match first); anything else, a line
    break included, is a word of its own character. On SEGMENTED's sentences it gives the
    hand segmentation (checked below)."""
    found, at = [], 0
    while at < len(text):
        size = next((n for n in range(LONGEST, 1, -1) if text[at : at + n] in DICTIONARY), 1)
        found.append(text[at : at + size])
        at += size
    return found


def expected_flags(document: str) -> list[int]:
    """Per character: 0 where a hand-segmented word starts, 1 where it goes on."""
    return [flag for word in by_hand(document) for flag in [0] + [1] * (len(word) - 1)]


@pytest.fixture(scope="module")
def documents():
    assert all(by_hand("".join(sentence)) == sentence for sentence in SEGMENTED)
    draw = random.Random(0)
    sentences = ["".join(sentence) for sentence in SEGMENTED]
    return ["".join(draw.choices(sentences, k=draw.randint(1, 6))) for _ in range(400)]


@pytest.fixture(scope="module")
def characters(documents):
    """A character-level WordPiece (every CJK character its own token)."""
    return train_tokenizer_on(Sample(documents, 0, True), TokenizerConfig(type="wordpiece"))


@pytest.fixture(scope="module")
def merged(documents):
    """A BPE that merges characters into multi-character tokens: its words come from the
    encoder's offsets instead of the ids."""
    config = TokenizerConfig(type="bpe", style="bert", vocab_size=200)
    tokenizer = train_tokenizer_on(Sample(documents, 0, True), config)
    assert any(len(t) > 1 and "\u4e00" <= t[0] <= "\u9fff" for t in tokenizer.get_vocab())
    return tokenizer


def pack_segmented(documents, tokenizer, folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(words, "jieba", lambda: by_hand)
        return pack_rows(documents, tokenizer, 64, "mlm", folder, segmenter="jieba")


@pytest.fixture(scope="module")
def segmented_blocks(documents, characters, tmp_path_factory):
    return pack_segmented(documents, characters, tmp_path_factory.mktemp("blocks") / "b")


def test_blocks_carry_the_segmenters_words(documents, characters, segmented_blocks):
    blocks, stats = segmented_blocks
    assert stats.word_segmenter == "jieba"
    assert words.character_table(characters) is not None  # words read back from the ids
    # One token per character: the stream is the documents' characters, each document then
    # [SEP]; a word's first character starts it (0), the others continue it (1).
    ids, flags = [], []
    for doc in documents:
        ids += characters.convert_tokens_to_ids(list(doc)) + [characters.sep_token_id]
        flags += expected_flags(doc) + [0]
    body = 62  # [CLS] 62 tokens [SEP]
    for index, block in enumerate(blocks.select(range(50))):
        piece = slice(index * body, (index + 1) * body)
        assert block["input_ids"][1:-1] == ids[piece]
        assert block[words.COLUMN][1:-1] == flags[piece]


def test_forked_workers_pack_the_same_words(documents, characters, segmented_blocks, tmp_path):
    """A corpus of many chunks is encoded by forked workers, each segmenting its own chunks:
    the blocks and their words are those of one process."""
    from llmkit.data import packing

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(packing, "CHUNK_CHARS", 2_000)  # ~8 chunks of this corpus
        patch.setattr(words, "jieba", lambda: by_hand)
        blocks, _ = pack_rows(
            documents, characters, 64, "mlm", tmp_path / "b", segmenter="jieba", num_proc=2
        )
    one_process = segmented_blocks[0]
    assert len(blocks) == len(one_process)
    assert blocks[words.COLUMN] == one_process[words.COLUMN]
    assert blocks["input_ids"] == one_process["input_ids"]


def test_merged_tokens_take_their_words_from_offsets(documents, merged, tmp_path):
    assert words.character_table(merged) is None
    blocks, _ = pack_segmented(documents, merged, tmp_path / "b")
    ids, flags = [], []
    for doc in documents:
        encoding = merged.backend_tokenizer.encode(doc, add_special_tokens=False)
        starts = expected_flags(doc)
        ids += encoding.ids + [merged.sep_token_id]
        # a token continues a word when it starts inside one (a token holding the end of one
        # word and the start of the next starts in the first), or where the token before it
        # starts (Metaspace's "▁" and the piece after it both start at 0)
        offsets = encoding.offsets
        flags += [0]
        flags += [
            int(starts[start] == 1 or start == before)
            for (before, _), (start, _) in zip(offsets, offsets[1:], strict=False)
        ]
        flags += [0]
    assert 0 < sum(flags) < len(flags)
    body = 62
    for index, block in enumerate(blocks.select(range(50))):
        piece = slice(index * body, (index + 1) * body)
        assert block["input_ids"][1:-1] == ids[piece]
        assert block[words.COLUMN][1:-1] == flags[piece]


def spans(continues: list[int]) -> list[range]:
    starts = [i for i, f in enumerate(continues) if not f] + [len(continues)]
    return [range(a, b) for a, b in zip(starts, starts[1:], strict=False)]


def test_a_selected_word_is_masked_whole(characters, segmented_blocks):
    blocks = segmented_blocks[0]
    collator = build_collator("mlm", characters, ObjectiveConfig(whole_word_mask=True))
    special = torch.tensor(characters.all_special_ids)
    masked = maskable = long_words_masked = 0
    torch.manual_seed(0)
    for start in range(0, 32 * 30, 32):
        rows = [blocks[i % len(blocks)] for i in range(start, start + 32)]
        batch = collator(rows)
        assert words.COLUMN not in batch, "the flags reached the model"
        chosen = batch["labels"] != -100
        for row, block in zip(chosen.tolist(), rows, strict=True):
            ids = block["input_ids"]
            for span in spans(block[words.COLUMN][1:-1]):
                picked = {row[1 + i] for i in span}
                # all characters of a word, none of them alone (a word cut by the block's
                # end is what the block holds of it)
                assert len(picked) == 1, [ids[1 + i] for i in span]
                long_words_masked += picked == {True} and len(span) > 1
        original = torch.tensor([r["input_ids"] for r in rows])
        maskable += (~torch.isin(original, special)).sum().item()
        masked += chosen.sum().item()
        assert (batch["input_ids"][chosen] == characters.mask_token_id).all()
    assert long_words_masked > 100
    # each word is selected with mlm_probability, so that share of the tokens is masked
    assert masked / maskable == pytest.approx(0.15, abs=0.015)


def test_evaluation_masks_use_the_words_and_drop_the_flags(characters, segmented_blocks):
    blocks = segmented_blocks[0].select(range(64))
    masking = ObjectiveConfig(whole_word_mask=True)
    evaluation = mask_once(blocks, characters, masking, seq_len=64, seed=0)
    assert words.COLUMN not in evaluation.column_names
    for block, masked in zip(blocks, evaluation, strict=True):
        chosen = [label != -100 for label in masked["labels"]]
        for span in spans(block[words.COLUMN][1:-1]):
            assert len({chosen[1 + i] for i in span}) == 1


def test_jieba_words_read_back_from_ids_equal_those_from_offsets():
    """The two ways to the flags agree on real Chinese text with Latin words and digits."""
    rjieba = pytest.importorskip("rjieba")
    texts = (FIXTURES / "chinese" / "essays.txt").read_text(encoding="utf-8").splitlines()
    texts.append("我们用PyTorch训练BERT模型，2026年12月发布了v2.0版本。")
    tokenizer = train_tokenizer_on(
        Sample(texts, 0, True), TokenizerConfig(type="wordpiece", alphabet="cjk-simplified")
    )
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    starts = np.array([start for e in encodings for start, _ in e.offsets])
    counts = np.array([len(e.ids) for e in encodings])
    from_offsets = words.continuation_flags(texts, starts, counts, rjieba.cut)
    ids = np.array([i for e in encodings for i in e.ids])
    table, rule = words.character_table(tokenizer), words.vocabulary_rule(tokenizer)
    from_ids = words.flags_from_characters(ids, table, rule, rjieba.cut)
    # On CJK characters the same words; Latin words and numbers keep the vocabulary's rule
    # in the ids way ("v2.0": v ##2 . 0, three words as BERT's pre-tokenizer splits it),
    # jieba's in the offsets way (one word).
    cjk = words.character_table(tokenizer)[ids] > 0
    assert cjk.sum() > 1000
    assert from_ids[cjk].tolist() == from_offsets[cjk].tolist()
    assert (from_ids[~cjk] != from_offsets[~cjk]).sum() == 2  # 2 and 0 of v2.0
    tokens = encodings[0].tokens  # 大规模语言模型的训练需要大量的文本和计算资源。
    assert "大规模" in rjieba.cut(texts[0])
    assert [from_ids[tokens.index(c)] for c in "大规模"] == [0, 1, 1]
    assert 0.3 < from_ids.mean() < 0.7  # Chinese words are mostly two characters


def test_auto_picks_jieba_for_chinese_only():
    chinese = (FIXTURES / "chinese" / "essays.txt").read_text(encoding="utf-8").splitlines()
    english = (FIXTURES / "wikitext-2-valid.txt").read_text(encoding="utf-8").splitlines()[:200]
    pytest.importorskip("rjieba")
    assert words.choose_segmenter("auto", chinese, nsp=False) == "jieba"
    assert words.choose_segmenter("auto", english, nsp=False) is None
    assert words.choose_segmenter("none", english, nsp=False) is None
    with pytest.raises(UserError, match="needs a word segmenter"):
        words.choose_segmenter("none", chinese, nsp=False)
    with pytest.raises(UserError, match="not on next-sentence pairs"):
        words.choose_segmenter("auto", chinese, nsp=True)


def test_a_missing_rjieba_is_one_clear_message(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rjieba", None)
    with pytest.raises(UserError, match=r"pip install 'llmkit\[chinese\]'"):
        words.choose_segmenter("jieba", ["任何文本"], nsp=False)

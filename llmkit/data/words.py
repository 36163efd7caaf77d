"""Where words start, for whole-word masking of text written without spaces (Chinese).

transformers' whole-word masking takes a word to be the tokens whose character offsets
touch, and packed blocks carry no offsets, so collators.py derives words from the vocabulary
(WordPiece `##` pieces, byte-level pieces without a leading space). Chinese has no spaces:
under a character-level WordPiece every character would be its own "word" and whole-word
masking would silently mask characters. Chinese-BERT-wwm found words with a segmenter (LTP;
jieba is the common substitute) and kept character tokens; so does llmkit with
`objective.segmenter: jieba` (rjieba, the Rust jieba binding transformers' RoFormer
tokenizer uses).

The segmenter runs while a chunk of the corpus is encoded (packing.py): each token gets a
flag "continues the word of the token before it", packed beside its id as the
`word_continues` column, which the masking collator reads instead of the vocabulary rule.
Nothing else changes: tokens stay characters. Two ways to the flags, the same words:
- a character-level vocabulary (every CJK entry one character, as BERT-Chinese's and
  llmkit's WordPiece have): the CJK text is read back from the ids themselves, so the fast
  encoder (no offsets) serves, and other tokens keep the vocabulary's rule;
- any other tokenizer (byte-level BPE, a BPE that merged characters): the encoder's
  character offsets place each token in the segmenter's words of the text.
Latin words and numbers inside Chinese text follow the vocabulary's rule in the first way
("v2.0" is v ##2 . 0, three words, as BERT's pre-tokenizer splits it) and jieba's in the
second (one word); Chinese words are the same either way.
Reading offsets back costs as much again as encoding; the first way keeps the segmenter
within 20% of packing without it (benchmarks/chinese_words.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain

import numpy as np

from llmkit.data.scripts import WORD_CHARACTER, mostly_unspaced
from llmkit.errors import UserError

Segment = Callable[[str], list[str]]
WORD_START_MARKERS = ("Ġ", "▁")  # byte-level BPE and Metaspace mark a preceding space
COLUMN = "word_continues"
# Text read to decide `auto` (and to refuse `none` on Chinese): the start of the corpus.
SAMPLE_CHARS = 200_000


def jieba() -> Segment:
    try:
        import rjieba
    except ImportError:
        raise UserError(
            "objective.segmenter jieba needs the rjieba package, which is not installed",
            "pip install 'llmkit[chinese]' (or objective.whole_word_mask: false)",
        ) from None
    return rjieba.cut


def choose_segmenter(requested: str, sample: Iterable[str], *, nsp: bool) -> str | None:
    """The segmenter whole-word masking uses on text that starts with `sample`: jieba, or
    None for the vocabulary's rule. `auto` picks jieba when the text is mostly Chinese or
    Japanese (ideographs and kana outnumber the other words); `none` there would mask
    single characters, and is refused rather than done silently."""
    unspaced = requested != "jieba" and mostly_unspaced("\n".join(sample))
    chosen = "jieba" if requested == "jieba" or (requested == "auto" and unspaced) else None
    if requested == "none" and unspaced:
        raise UserError(
            "objective.whole_word_mask on text written without spaces (mostly Chinese or "
            "Japanese) needs a word segmenter: without one every character is a word, and "
            "whole-word masking would mask single characters",
            "set objective.segmenter: jieba (or auto), or objective.whole_word_mask: false",
        )
    if chosen and nsp:
        raise UserError(
            "objective.segmenter jieba works on packed blocks, not on next-sentence pairs",
            "set objective.nsp: false (Chinese RoBERTa-wwm and MacBERT drop it too)",
        )
    if chosen:
        jieba()  # a missing package fails here, before the corpus is read
    return chosen


def peek_text(batches: Iterator[list[str]]) -> tuple[list[str], Iterator[list[str]]]:
    """The first SAMPLE_CHARS characters of a stream of text batches, and the whole stream
    (those batches included) to read on."""
    taken: list[list[str]] = []
    size = 0
    for batch in batches:
        taken.append(batch)
        size += sum(map(len, batch))
        if size >= SAMPLE_CHARS:
            break
    return [text for batch in taken for text in batch], chain(taken, batches)


def continuation_flags(
    texts: list[str], starts: np.ndarray, counts: np.ndarray, segment: Segment
) -> np.ndarray:
    """1 where a token continues the segmenter's word of the token before it, for the tokens
    of all `texts` in order (`counts` tokens each; `starts`: each token's first character in
    its text, the encoder's offsets). A token starting where no word starts, or where the
    token before it starts (pieces of one character), continues a word; a text's first token
    never does.

    One segmenter call and array operations for the whole chunk (a call and a few array
    operations per text cost as much as the encoding itself): the texts are joined by
    newlines, at which the segmenter always ends a word.
    """
    joined = "\n".join(texts)
    lengths = np.fromiter(map(len, segment(joined)), dtype=np.int64)
    word_start = np.zeros(len(joined) + 1, dtype=bool)
    word_start[np.cumsum(lengths) - lengths] = True
    text_start = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]])
    position = starts + np.repeat(text_start, counts)
    continues = ~word_start[position]
    continues[1:] |= position[1:] == position[:-1]
    firsts = (np.cumsum(counts) - counts)[counts > 0]
    continues[firsts] = False
    return continues.astype(np.uint8)


def vocabulary_rule(tokenizer) -> np.ndarray:
    """Per token id, whether the token continues a word, by the rule BERT's whole-word
    masking used: a WordPiece `##` piece, or a byte-level/Metaspace piece without the
    leading-space marker."""
    wordpiece = type(tokenizer.backend_tokenizer.model).__name__ == "WordPiece"
    vocabulary = tokenizer.get_vocab()
    rule = np.zeros(max(vocabulary.values()) + 1, dtype=bool)
    for token, index in vocabulary.items():
        if wordpiece:
            rule[index] = token.startswith("##")
        else:
            rule[index] = not token.startswith(WORD_START_MARKERS) and token.isalnum()
    return rule


def character_table(tokenizer) -> np.ndarray | None:
    """Per token id, the code point of a token that is one CJK character (0 for others), or
    None when the vocabulary is not character-level for CJK (an entry holds a CJK character
    with anything else, or none holds one: a byte-level vocabulary)."""
    vocabulary = tokenizer.get_vocab()
    table = np.zeros(max(vocabulary.values()) + 1, dtype=np.uint32)
    for token, index in vocabulary.items():
        if not WORD_CHARACTER.search(token):
            continue
        if token.startswith("##") and len(token) == 3:  # WordPiece's unused "##字" entries
            continue
        if len(token) != 1:
            return None
        table[index] = ord(token)
    return table if table.any() else None


def flags_from_characters(
    ids: np.ndarray, table: np.ndarray, vocabulary_rule: np.ndarray, segment: Segment
) -> np.ndarray:
    """Word-continuation flags of a character-level vocabulary's token stream: the CJK
    characters read back from the ids (any other token a line break, where the segmenter
    ends a word) and segmented at once; other tokens keep `vocabulary_rule` (a `##`
    piece continues its word)."""
    points = table[ids]
    text = np.where(points > 0, points, ord("\n")).astype("<u4").tobytes().decode("utf-32-le")
    lengths = np.fromiter(map(len, segment(text)), dtype=np.int64)
    word_start = np.zeros(len(text), dtype=bool)
    word_start[np.cumsum(lengths) - lengths] = True
    return np.where(points > 0, ~word_start, vocabulary_rule[ids]).astype(np.uint8)

"""Scripts written without spaces between words (Chinese, Japanese), named once: WordPiece
decoding joins their characters (tokenizer.py), word counts count each of their characters
as a word (documents.py), and whole-word masking needs a segmenter for them (words.py)."""

import re

# Words of their own: the CJK unified ideographs (with extension A and the compatibility
# block), hiragana and katakana.
WORD_CHARACTERS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Written without spaces around them: those, and CJK radicals, symbols and punctuation,
# bopomofo, fullwidth forms.
UNSPACED = WORD_CHARACTERS + "\u2e80-\u2fdf\u3000-\u303f\u3100-\u312f\uff00-\uffef"
WORD_CHARACTER = re.compile(f"[{WORD_CHARACTERS}]")
# CJK symbols and punctuation, and the fullwidth forms' punctuation (not their letters or digits)
CJK_PUNCTUATION = re.compile("[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")


def unspaced_words(text: str) -> tuple[int, int]:
    """(ideographs and kana, other words split at whitespace) of `text`; CJK punctuation is
    neither."""
    characters = len(WORD_CHARACTER.findall(text))
    return characters, len(CJK_PUNCTUATION.sub(" ", WORD_CHARACTER.sub(" ", text)).split())


def mostly_unspaced(text: str) -> bool:
    """Written mostly in Chinese or Japanese: its ideographs and kana outnumber its other
    words (a few names in an English article do not make it so)."""
    characters, others = unspaced_words(text)
    return characters > others


# Character sets in common use, each derived from the national standard that defines one (as
# Python's codecs hold it) rather than listed by hand: GB 2312's 6,763 simplified characters
# (mainland China), Big5's 13,061 traditional ones (Taiwan, Hong Kong); "cjk" is both.
ALPHABET_CODECS = {
    "cjk-simplified": ("gb2312",),
    "cjk-traditional": ("big5",),
    "cjk": ("gb2312", "big5"),
}


def _encodable(character: str, codec: str) -> bool:
    try:
        character.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def common_characters(alphabet: str) -> list[str]:
    """The unified ideographs of an alphabet of ALPHABET_CODECS, in code point order."""
    codecs = ALPHABET_CODECS[alphabet]
    return [
        chr(point)
        for point in range(0x4E00, 0xA000)
        if any(_encodable(chr(point), codec) for codec in codecs)
    ]

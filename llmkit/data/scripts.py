"""Scripts written without spaces between words (Chinese, Japanese), named once: WordPiece
decoding joins their characters (tokenizer.py), and word counts count each of their
characters as a word (documents.py)."""

# Words of their own: the CJK unified ideographs (with extension A and the compatibility
# block), hiragana and katakana.
WORD_CHARACTERS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Written without spaces around them: those, and CJK radicals, symbols and punctuation,
# bopomofo, fullwidth forms.
UNSPACED = WORD_CHARACTERS + "\u2e80-\u2fdf\u3000-\u303f\u3100-\u312f\uff00-\uffef"


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

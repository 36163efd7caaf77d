"""Scripts written without spaces between words (Chinese, Japanese), named once: WordPiece
decoding joins their characters (tokenizer.py), and word counts count each of their
characters as a word (documents.py)."""

# Words of their own: the CJK unified ideographs (with extension A and the compatibility
# block), hiragana and katakana.
WORD_CHARACTERS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Written without spaces around them: those, and CJK radicals, symbols and punctuation,
# bopomofo, fullwidth forms.
UNSPACED = WORD_CHARACTERS + "\u2e80-\u2fdf\u3000-\u303f\u3100-\u312f\uff00-\uffef"

"""Documents for perplexity: how a source's rows become the texts that are scored.

- A record of a structured source (JSONL, JSON, CSV/TSV, parquet, a saved dataset, a hub
  dataset) is one document.
- A plain-text file is one document: its lines, each ended by "\\n" (eval-ppl scores each file
  of a folder as its own).
- Raw WikiText (the known names, or a file named wiki.*) is split into articles at its
  top-level headings (" = Title = "), as lm-evaluation-harness's document-level WikiText is.

lm-evaluation-harness scores a WikiText article after undoing WikiText's tokenization
(`wikitext_detokenize`), while it counts words and bytes on the article as stored; llmkit
does the same, so its word and byte perplexities are the harness's figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmkit.data.scripts import unspaced_words
from llmkit.data.sources import ResolvedSource

STRUCTURED_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet"}


@dataclass(frozen=True)
class Document:
    text: str  # as stored: words and bytes are counted on this
    scored: str  # what the model scores (detokenized WikiText, else the same text)


def is_wikitext(src: str, source: ResolvedSource) -> bool:
    if src.startswith("wikitext-"):
        return True
    return any(f.name.startswith("wiki.") for f in source.files)


def is_structured(source: ResolvedSource) -> bool:
    if source.hub is not None or source.saved_dataset is not None:
        return True
    return source.format in STRUCTURED_SUFFIXES


def is_article_heading(line: str) -> bool:
    """` = Title = ` starts an article; ` = = Section = = ` does not."""
    stripped = line.strip()
    return (
        stripped.startswith("= ")
        and stripped.endswith(" =")
        and not stripped.startswith("= =")
        and len(stripped) > 4
    )


def split_wikitext_articles(rows: list[str]) -> list[str]:
    articles: list[list[str]] = []
    for row in rows:
        if is_article_heading(row) or not articles:
            articles.append([])
        articles[-1].append(row)
    return ["".join(line + "\n" for line in article) for article in articles]


# lm-evaluation-harness's wikitext_detokenizer, rule for rule (tasks/wikitext), in its order.
_WIKITEXT_RULES: list[tuple[str, str, bool]] = [  # (pattern, replacement, is_regex)
    ("s '", "s'", False),
    (r"/' [0-9]/", r"/'[0-9]/", True),
    (" @-@ ", "-", False),
    (" @,@ ", ",", False),
    (" @.@ ", ".", False),
    (" : ", ": ", False),
    (" ; ", "; ", False),
    (" . ", ". ", False),
    (" ! ", "! ", False),
    (" ? ", "? ", False),
    (" , ", ", ", False),
    (r"\(\s*([^\)]*?)\s*\)", r"(\1)", True),
    (r"\[\s*([^\]]*?)\s*\]", r"[\1]", True),
    (r"{\s*([^}]*?)\s*}", r"{\1}", True),
    (r"\"\s*([^\"]*?)\s*\"", r'"\1"', True),
    (r"'\s*([^']*?)\s*'", r"'\1'", True),
    ("= = = =", "====", False),
    ("= = =", "===", False),
    ("= =", "==", False),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}", False),
    (" \n", "\n", False),
    ("\n ", "\n", False),
    (" N ", " 1 ", False),
    (" 's", "'s", False),
]


def wikitext_detokenize(text: str) -> str:
    for pattern, replacement, is_regex in _WIKITEXT_RULES:
        text = (
            re.sub(pattern, replacement, text) if is_regex else text.replace(pattern, replacement)
        )
    return text


def build_documents(
    rows: list[str], *, structured: bool, wikitext: bool, detokenize: bool
) -> list[Document]:
    if wikitext:
        texts = split_wikitext_articles(rows)
    elif structured:
        texts = list(rows)
    else:
        texts = ["".join(row + "\n" for row in rows)]
    texts = [t for t in texts if t.strip()]
    return [Document(t, wikitext_detokenize(t) if detokenize else t) for t in texts]


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them: pieces of a split at whitespace runs. In a
    document written mostly in Chinese or Japanese, whose words have no spaces between them
    (a paragraph would be one "word"), each ideograph or kana counts as a word and the rest
    is split at whitespace, CJK punctuation counting as none. "Mostly": its ideographs and
    kana outnumber the other words; a few in other text (names in a Wikipedia article)
    leave the harness's count as it is."""
    characters, others = unspaced_words(text)
    if characters <= others:
        return len(re.split(r"\s+", text))
    return characters + others

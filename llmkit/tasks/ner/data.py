"""Named-entity recognition (CoNLL-2003; CLUENER2020, CLUE's Chinese NER): reading the data,
and carrying word labels to sub-word tokens and back.

The column format (CoNLL-2003): one word per line with its tags in columns, the entity tag
last (`EU NNP B-NP B-ORG`), a blank line between sentences, `-DOCSTART-` lines between
documents. From the hub: `lhoestq/conll2003` by default (tokens, ner_tags as class ids;
`eriktks/conll2003` is a loading script, which datasets no longer runs), or `task.dataset`.

CLUENER2020 (CLUE's `cluener_public/train.json`, `dev.json`): one JSON object per line, its
`text` and its `label`: {entity type: {entity text: [[first, last], ...]}}, character
positions, the last included. Each character becomes a word (whitespace dropped) tagged B-/I-
with its entity's type, so entity-level F1 over the tags is CLUENER's span F1.

A word split into several tokens is labelled on its first token only; the others are
ignored by the loss (-100), and a word's prediction is its first token's. With
`task.label_all_subwords` every token of a word is trained, a B- tag continuing as I-.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from llmkit.errors import UserError
from llmkit.tasks.ner import NerKeys
from llmkit.tasks.splits import HubCopy, SplitSource

HUB_ID = "lhoestq/conll2003"
SPLIT_FILES = {
    "train": ("train.txt", "eng.train"),
    "validation": ("valid.txt", "dev.txt", "eng.testa"),
    "test": ("test.txt", "eng.testb"),
}
IGNORED = -100  # the loss and the metrics skip these positions
OUTSIDE = "O"


def read_conll(path: Path) -> datasets.Dataset:
    """Sentences as `tokens` (words) and `tags` (their entity tags, as strings)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text") from e
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(lines + [""], 1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        if len(columns) < 2:
            raise UserError(
                f"{path}:{number} has one column; CoNLL lines hold a word and its tags "
                "(the entity tag last)"
            )
        words.append(columns[0])
        tags.append(columns[-1])
    if not sentences:
        raise UserError(f"{path} holds no sentences")
    return datasets.Dataset.from_dict(
        {"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]}
    )


CLUENER_TYPES = (
    "address", "book", "company", "game", "government",
    "movie", "name", "organization", "position", "scene",
)  # fmt: skip
CLUENER_FILES = {"train": ("train.json",), "validation": ("dev.json",)}


def read_cluener(path: Path) -> datasets.Dataset:
    """CLUENER2020's JSON lines as `tokens` (the characters) and `tags` (B-/I-<type>, O)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text") from e
    sentences = {"tokens": [], "tags": []}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where} is not a JSON object ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UserError(f"{where} has no 'text' field for ner/cluener")
        if not isinstance(row.get("label"), dict):
            raise UserError(f"{where} has no 'label' field for ner/cluener")
        text = row["text"]
        tags = [OUTSIDE] * len(text)
        for kind, entities in row["label"].items():
            if kind not in CLUENER_TYPES:
                raise UserError(
                    f"{where}: entity type {kind!r} is outside ner/cluener's set "
                    f"({', '.join(CLUENER_TYPES)})"
                )
            for entity, spans in entities.items():
                for first, last in spans:
                    if text[first : last + 1] != entity:
                        raise UserError(
                            f"{where}: {kind} {entity!r} is not at characters {first}..{last} "
                            f"of the text ({text[first : last + 1]!r} is)"
                        )
                    tags[first : last + 1] = [f"B-{kind}"] + [f"I-{kind}"] * (last - first)
        kept = [i for i, character in enumerate(text) if not character.isspace()]
        sentences["tokens"].append([text[i] for i in kept])
        sentences["tags"].append([tags[i] for i in kept])
    if not sentences["tokens"]:
        raise UserError(f"{path} is empty")
    return datasets.Dataset.from_dict(sentences)


def split_source(keys: NerKeys) -> SplitSource:
    if keys.name == "ner/cluener":
        return SplitSource(
            keys,
            lambda path, split: read_cluener(path),
            CLUENER_FILES,
            copy_folder="clue/cluener_public",
            hub=_hub_copy(keys, keys.dataset) if keys.dataset else None,
        )
    return SplitSource(
        keys,
        lambda path, split: read_conll(path),
        SPLIT_FILES,
        copy_folder="conll2003",
        hub=_hub_copy(keys, keys.dataset or HUB_ID),
    )


def _hub_copy(keys: NerKeys, repo: str) -> HubCopy:
    """`repo` on the hub, its rows as tokens and tags."""
    return HubCopy(
        repo, keys.dataset_config, lambda dataset, split: hub_tags_as_strings(dataset, repo)
    )


def hub_tags_as_strings(dataset: datasets.Dataset, where: str) -> datasets.Dataset:
    """`tokens` and `tags` (strings) from a hub copy whose `ner_tags` are class ids with names,
    or strings already."""
    if "tokens" not in dataset.column_names or "ner_tags" not in dataset.column_names:
        raise UserError(
            f"{where} has no tokens and ner_tags columns ({', '.join(dataset.column_names)})"
        )
    names = getattr(getattr(dataset.features["ner_tags"], "feature", None), "names", None)
    return dataset.map(
        lambda row: {"tags": [names[i] if names else str(i) for i in row["ner_tags"]]},
        remove_columns=[c for c in dataset.column_names if c != "tokens"],
    )


def label_names(tags: list[list[str]]) -> list[str]:
    """The tag set, O first, then entity types in order with B- before I-."""
    found = {tag for sentence in tags for tag in sentence}
    entities = sorted(found - {OUTSIDE}, key=lambda t: (t[2:], t[:2]))
    return [OUTSIDE, *entities]


def align_labels(
    word_ids: list[int | None], word_labels: list[int], names: list[str], *, all_subwords: bool
) -> list[int]:
    """One label per token: the word's label on its first token; on its other tokens -100,
    or (all_subwords) the word's label with B- turned into I-. Special tokens: -100."""
    aligned = []
    previous = None
    for word in word_ids:
        if word is None:
            aligned.append(IGNORED)
        elif word != previous:
            aligned.append(word_labels[word])
        elif all_subwords:
            name = names[word_labels[word]]
            inside = "I-" + name[2:] if name.startswith("B-") else name
            aligned.append(names.index(inside) if inside in names else word_labels[word])
        else:
            aligned.append(IGNORED)
        previous = word
    return aligned


def word_tags(
    token_predictions: list[int], word_ids: list[int | None], words: int, names: list[str]
) -> list[str]:
    """Each word's predicted tag: its first token's. Words cut off by truncation were never
    seen by the model and count as O."""
    tags = [OUTSIDE] * words
    previous = None
    for prediction, word in zip(token_predictions, word_ids, strict=False):
        if word is not None and word != previous:
            tags[word] = names[prediction]
        previous = word
    return tags

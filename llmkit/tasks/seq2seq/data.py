"""Text-to-text pairs for summarization and translation: where they come from and which
columns hold them.

Local files are any format llmkit reads (`.jsonl`, `.json`, `.csv`, `.tsv`, `.parquet`, a
saved dataset). Summarization reads two text columns (`task.source_column`,
`task.target_column`; XSum's `document` and `summary` by default). Translation reads WMT's
layout, a `translation` column of {language: text} (`task.source_lang`, `task.target_lang`),
or, without one, columns named after the two languages. From the hub: `task.dataset`
(+ `task.dataset_config`), e.g. `EdinburghNLP/xsum` or `wmt16` with `de-en`.
"""

from __future__ import annotations

import datasets

from llmkit.errors import UserError, did_you_mean
from llmkit.tasks.seq2seq import Seq2SeqKeys, TranslationKeys
from llmkit.tasks.splits import SplitSource, files_or_hub


def source_and_target(dataset: datasets.Dataset, keys: Seq2SeqKeys, *, where: str):
    """The dataset as two text columns, `source` and `target`."""
    columns = dataset.column_names
    translating = isinstance(keys, TranslationKeys)
    if translating and "translation" in columns:
        source, target = keys.source_lang, keys.target_lang
        pairs = dataset["translation"]
        missing = [lang for lang in (source, target) if any(lang not in p for p in pairs[:1])]
        if missing:
            raise UserError(
                f"{where}: the translation column has no '{missing[0]}' text",
                f"its languages: {', '.join(pairs[0])}; set task.source_lang / task.target_lang",
            )
        return datasets.Dataset.from_dict(
            {"source": [p[source] for p in pairs], "target": [p[target] for p in pairs]}
        )
    if translating:
        names, key = (keys.source_lang, keys.target_lang), "task.source_lang / task.target_lang"
    else:
        names, key = (keys.source_column, keys.target_column), "task.source_column / target_column"
    for name in names:
        if name not in columns:
            raise UserError(
                f"{where} has no column '{name}'{did_you_mean(name, columns)}",
                f"its columns: {', '.join(columns)}; set {key}",
            )
    selected = dataset.select_columns(list(names))
    return selected.rename_columns({names[0]: "source", names[1]: "target"})


def split_source(keys: Seq2SeqKeys) -> SplitSource:
    """Where the `source`/`target` pairs of each split are: local files of any format
    llmkit reads, or the hub dataset `task.dataset`."""

    def pairs(dataset: datasets.Dataset, where: str) -> datasets.Dataset:
        found = source_and_target(dataset, keys, where=where)
        found = found.filter(lambda row: bool(row["source"].strip() and row["target"].strip()))
        if len(found) == 0:
            raise UserError(f"{where}: every source or target text is empty")
        return found

    return files_or_hub(keys, pairs)

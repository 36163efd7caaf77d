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

from llmkit.data.sources import load_hub_split, load_source
from llmkit.errors import UserError, did_you_mean
from llmkit.recipe import TaskConfig


def source_and_target(dataset: datasets.Dataset, spec: TaskConfig, *, kind: str, where: str):
    """The dataset as two text columns, `source` and `target`."""
    columns = dataset.column_names
    if kind == "translation" and "translation" in columns:
        source, target = spec.source_lang, spec.target_lang
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
    if kind == "translation" and {spec.source_lang, spec.target_lang} <= set(columns):
        names = (spec.source_lang, spec.target_lang)
    else:
        names = (spec.source_column, spec.target_column)
    for name in names:
        if name not in columns:
            key = (
                "task.source_lang / task.target_lang"
                if kind == "translation"
                else ("task.source_column / task.target_column")
            )
            raise UserError(
                f"{where} has no column '{name}'{did_you_mean(name, columns)}",
                f"its columns: {', '.join(columns)}; set {key}",
            )
    selected = dataset.select_columns(list(names))
    return selected.rename_columns({names[0]: "source", names[1]: "target"})


def load_pairs(spec: TaskConfig, split: str, *, kind: str) -> datasets.Dataset | None:
    """`source`/`target` pairs of one split; None when the split is not given."""
    name = f"seq2seq/{kind}"
    file = spec.train_file if split == "train" else spec.validation_file
    if file:
        dataset, resolved = load_source(file)
        where = resolved.description
    elif spec.dataset:
        dataset = load_hub_split(
            spec.dataset,
            spec.dataset_config,
            split,
            what=f"{name}: {spec.dataset}",
            how_to="set task.train_file and task.validation_file to local files",
        )
        where = f"{spec.dataset}:{split}"
    else:
        return None
    pairs = source_and_target(dataset, spec, kind=kind, where=where)
    pairs = pairs.filter(lambda row: bool(row["source"].strip() and row["target"].strip()))
    if len(pairs) == 0:
        raise UserError(f"{where}: every source or target text is empty")
    return pairs

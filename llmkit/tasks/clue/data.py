"""CLUE's classification tasks: their fields, label sets, and how to read them.

Data comes from the hub (`clue/clue`, one config per task) or from a local folder in CLUE's
own download layout: `<task>_public/train.json`, `dev.json`, `test.json`, one JSON object
per line with the task's own field names (OCNLI's training file is `train.50k.json`).
Rows whose label is "-" (OCNLI and CMNLI pairs on which the annotators did not agree) are
left out, as CLUE's baselines do. Two tasks are not plain text fields: CLUEWSC2020 asks
whether a pronoun refers to a noun phrase (both marked in the text, `_noun_` and
`[pronoun]`, as CLUE's baseline marks them), and CSL whether keywords belong to an abstract
(the keywords joined by "，" are the first text, the abstract the second).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets

from llmkit.errors import UserError
from llmkit.tasks.clue import ClueKeys
from llmkit.tasks.glue.data import GlueTask, is_labelled
from llmkit.tasks.splits import HubCopy, SplitSource

NO_GOLD_LABEL = "-"
SPLIT_FILES = {
    "train": ("train.json", "train.50k.json"),
    "validation": ("dev.json",),
    "test": ("test.json",),
}


def _fields(*names: str) -> Callable[[dict], tuple[str, ...]]:
    return lambda row: tuple(str(row[name]) for name in names)


def _marked_spans(row: dict) -> tuple[str]:
    """CLUEWSC2020's text with its noun phrase as _noun_ and its pronoun as [pronoun]; a span
    whose index does not hold its text is marked where the text occurs nearest to it."""
    text, target = str(row["text"]), row["target"]
    marks = [
        (target["span1_index"], str(target["span1_text"]), "_", "_"),
        (target["span2_index"], str(target["span2_text"]), "[", "]"),
    ]
    placed = []
    for index, span, before, after in marks:
        if text[index : index + len(span)] != span:
            found = [i for i in range(len(text)) if text.startswith(span, i)]
            if not found:
                continue
            index = min(found, key=lambda i: abs(i - index))
        placed.append((index, span, before, after))
    for index, span, before, after in sorted(placed, reverse=True):  # the later one first
        text = text[:index] + before + span + after + text[index + len(span) :]
    return (text,)


def _keywords_and_abstract(row: dict) -> tuple[str, str]:
    return "，".join(map(str, row["keyword"])), str(row["abst"])


@dataclass(frozen=True)
class ClueTask(GlueTask):
    # one row of the task's JSON lines (or of the hub's rows) → the model's input texts
    texts: Callable[[dict], tuple[str, ...]] = _fields("sentence")
    required: tuple[str, ...] = ("sentence",)  # the JSON fields `texts` reads

    @property
    def folder(self) -> str:  # in CLUE's download layout
        return f"{self.name}_public"


def _task(name, fields, labels, texts=None, required=None) -> ClueTask:
    return ClueTask(
        name=name,
        fields=fields,
        local_fields=tuple((f,) for f in fields),
        labels=labels,
        metrics=("accuracy",),
        submission_name=name,
        texts=texts or _fields(*fields),
        required=required or fields,
    )


NLI = ("neutral", "entailment", "contradiction")  # the hub's order
TASKS: dict[str, ClueTask] = {
    "afqmc": _task("afqmc", ("sentence1", "sentence2"), ("0", "1")),
    "tnews": _task(  # TNEWS' label codes skip 105 and 111
        "tnews", ("sentence",), tuple(str(c) for c in range(100, 117) if c not in (105, 111))
    ),
    "iflytek": _task("iflytek", ("sentence",), tuple(str(c) for c in range(119))),
    "ocnli": _task("ocnli", ("sentence1", "sentence2"), NLI),
    "cmnli": _task("cmnli", ("sentence1", "sentence2"), NLI),
    "cluewsc2020": _task(
        "cluewsc2020", ("text",), ("true", "false"), _marked_spans, ("text", "target")
    ),
    "csl": _task(
        "csl", ("keywords", "abst"), ("0", "1"), _keywords_and_abstract, ("keyword", "abst")
    ),
}


def clue_task(name: str) -> ClueTask:
    """The CLUE task of a task name the registry knows (clue/tnews)."""
    return TASKS[name.removeprefix("clue/")]


def _label_set(task: ClueTask) -> str:
    if len(task.labels) > 20:
        return f"{task.labels[0]} to {task.labels[-1]}"
    return ", ".join(task.labels)


def task_rows(
    task: ClueTask, rows: list[dict], source: str, where: Callable[[int], str], *, needs_labels
) -> datasets.Dataset:
    """The model's columns (the task's fields, `label` as an id, -1 when unlabelled, and
    `idx`) of CLUE rows read from `source`; `where(i)` names row i in messages."""
    columns: dict[str, list] = {name: [] for name in task.fields} | {"label": [], "idx": []}
    for number, row in enumerate(rows):
        missing = [name for name in task.required if name not in row]
        if missing:
            raise UserError(
                f"{where(number)} has no {', '.join(map(repr, missing))} field for "
                f"clue/{task.name}",
                f"its rows need {', '.join(task.required)}" + (", label" if needs_labels else ""),
            )
        label = row.get("label")
        if label is None and needs_labels:
            raise UserError(f"{where(number)} has no 'label' field for clue/{task.name}")
        if label is not None and str(label) == NO_GOLD_LABEL:
            continue  # annotators did not agree: CLUE's baselines leave the pair out
        if label is None:
            label_id = -1
        elif str(label) in task.labels:
            label_id = task.labels.index(str(label))
        else:
            raise UserError(
                f"{where(number)}: label {str(label)!r} is outside clue/{task.name}'s label "
                f"set ({_label_set(task)})"
            )
        for name, text in zip(task.fields, task.texts(row), strict=True):
            columns[name].append(text)
        columns["label"].append(label_id)
        columns["idx"].append(row.get("id", row.get("idx", number)))
    if not columns["label"]:
        raise UserError(f"{source} holds no rows with a gold label (all are '-')")
    return datasets.Dataset.from_dict(columns)


def read_local_split(task: ClueTask, path: Path, *, needs_labels: bool) -> datasets.Dataset:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text") from e
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise UserError(f"{path} is empty")
    rows = []
    for number, line in numbered:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(
                f"{path}:{number} is not a JSON object ({e.msg})",
                "CLUE's files hold one JSON object per line",
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number} is not a JSON object")
        rows.append(row)
    where = lambda i: f"{path}:{numbered[i][0]}"  # noqa: E731
    return task_rows(task, rows, str(path), where, needs_labels=needs_labels)


def split_source(task: ClueTask, keys: ClueKeys) -> SplitSource:
    """Where the task's splits are: local JSON lines, else the hub's `clue/clue`."""

    def from_hub(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        names = dataset.features["label"].names  # the hub's label ids → CLUE's label text
        rows = [
            row | {"label": names[row["label"]] if row["label"] >= 0 else None} for row in dataset
        ]
        source = f"clue/clue {task.name} {split}"
        where = lambda i: f"{source} row {i}"  # noqa: E731
        return task_rows(task, rows, source, where, needs_labels=is_labelled(split))

    def read(path: Path, split: str) -> datasets.Dataset:
        return read_local_split(task, path, needs_labels=is_labelled(split))

    hub = HubCopy("clue/clue", task.name, from_hub)
    return SplitSource(keys, read, SPLIT_FILES, copy_folder=f"clue/{task.folder}", hub=hub)

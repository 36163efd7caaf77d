"""GLUE tasks: their text fields, label sets and official metrics, and how to read them.

Data comes from the hub (`nyu-mll/glue`) or from a local folder in the standard GLUE layout
(`<TASK>/train.tsv`, `dev.tsv`, `test.tsv`). Local files are messy, and each oddity of the
real ones is handled here: a UTF-8 BOM (MRPC), no header (CoLA), a missing final newline
(CoLA dev), quoted fields and numeric labels in a Hugging Face export layout (RTE), string
labels (RTE/QNLI/MNLI in the original layout).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import datasets

from llmkit.data.known import GLUE_FOLDERS
from llmkit.errors import UserError
from llmkit.tasks.glue import GlueKeys
from llmkit.tasks.splits import HubCopy, SplitSource

LABEL_COLUMNS = ("label", "Quality", "is_duplicate", "score", "gold_label")
SPLIT_FILES = {
    "train": ("train.tsv",),
    "validation": ("dev.tsv",),
    "validation_matched": ("dev_matched.tsv",),
    "validation_mismatched": ("dev_mismatched.tsv",),
    "test": ("test.tsv",),
    "test_matched": ("test_matched.tsv",),
    "test_mismatched": ("test_mismatched.tsv",),
}


@dataclass(frozen=True)
class GlueTask:
    name: str
    fields: tuple[str, ...]  # hub column names of the text fields
    local_fields: tuple[tuple[str, ...], ...]  # accepted header names of each field
    labels: tuple[str, ...]  # label names by id; empty: regression
    metrics: tuple[str, ...]
    validation_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[str, ...] = ("test",)
    headerless_columns: tuple[int, ...] | None = None  # field, label positions without a header
    submission_name: str = ""

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def is_pair(self) -> bool:
        return len(self.fields) == 2

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def folder(self) -> str:  # in the standard download layout
        return GLUE_FOLDERS[self.name]

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(
        "cola",
        ("sentence",),
        (("sentence",),),
        ("unacceptable", "acceptable"),
        ("matthews_correlation",),
        headerless_columns=(3, 1),
        submission_name="CoLA",
    ),
    "sst2": GlueTask(
        "sst2",
        ("sentence",),
        (("sentence",),),
        ("negative", "positive"),
        ("accuracy",),
        submission_name="SST-2",
    ),
    "mrpc": GlueTask(
        "mrpc",
        ("sentence1", "sentence2"),
        (("sentence1", "#1 String"), ("sentence2", "#2 String")),
        ("not_equivalent", "equivalent"),
        ("f1", "accuracy"),
        submission_name="MRPC",
    ),
    "qqp": GlueTask(
        "qqp",
        ("question1", "question2"),
        (("question1",), ("question2",)),
        ("not_duplicate", "duplicate"),
        ("f1", "accuracy"),
        submission_name="QQP",
    ),
    "stsb": GlueTask(
        "stsb",
        ("sentence1", "sentence2"),
        (("sentence1",), ("sentence2",)),
        (),
        ("pearson", "spearmanr"),
        submission_name="STS-B",
    ),
    "mnli": GlueTask(
        "mnli",
        ("premise", "hypothesis"),
        (("premise", "sentence1"), ("hypothesis", "sentence2")),
        ("entailment", "neutral", "contradiction"),
        ("accuracy",),
        validation_splits=("validation_matched", "validation_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
        submission_name="MNLI",
    ),
    "qnli": GlueTask(
        "qnli",
        ("question", "sentence"),
        (("question",), ("sentence",)),
        ("entailment", "not_entailment"),
        ("accuracy",),
        submission_name="QNLI",
    ),
    "rte": GlueTask(
        "rte",
        ("sentence1", "sentence2"),
        (("sentence1",), ("sentence2",)),
        ("entailment", "not_entailment"),
        ("accuracy",),
        submission_name="RTE",
    ),
    "wnli": GlueTask(
        "wnli",
        ("sentence1", "sentence2"),
        (("sentence1",), ("sentence2",)),
        ("not_entailment", "entailment"),
        ("accuracy",),
        submission_name="WNLI",
    ),
}


def glue_task(name: str) -> GlueTask:
    """The GLUE task of a task name the registry knows (glue/sst2)."""
    return TASKS[name.removeprefix("glue/")]


def read_tsv(path: Path) -> list[list[str]]:
    """Rows of a GLUE TSV: BOM removed; quoted fields understood only in a quoted layout."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text") from e
    first_line = text.split("\n", 1)[0].rstrip("\r").split("\t")
    # A Hugging Face export (pandas) has an `idx` column and quotes fields that need it; the
    # original GLUE files never quote, and their sentences hold bare quote characters.
    quoting = csv.QUOTE_MINIMAL if "idx" in first_line else csv.QUOTE_NONE
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=quoting))
    return [row for row in rows if any(cell.strip() for cell in row)]


def _label_id(task: GlueTask, value: str, where: str) -> float | int:
    value = value.strip()
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where}: the score '{value}' is not a number") from None
    if value in task.labels:
        return task.labels.index(value)
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(task.labels):
        return int(value)
    raise UserError(
        f"{where}: label '{value}' is outside glue/{task.name}'s label set "
        f"({', '.join(f'{i}={n}' for i, n in enumerate(task.labels))})"
    )


def read_local_split(task: GlueTask, path: Path, *, needs_labels: bool) -> datasets.Dataset:
    rows = read_tsv(path)
    if not rows:
        raise UserError(f"{path} is empty")
    header = [cell.strip() for cell in rows[0]]
    if any(name in header for names in task.local_fields for name in names) or "index" in header:
        body = rows[1:]
        try:
            field_columns = [
                next(header.index(n) for n in names if n in header) for names in task.local_fields
            ]
        except StopIteration:
            found = [n for names in task.local_fields for n in names if n in header]
            shape = "sentence-pair" if task.is_pair else "single-sentence"
            raise UserError(
                f"{path}: glue/{task.name} is a {shape} "
                f"task with fields {', '.join(task.fields)}, but the file has {len(found)} of them "
                f"(columns: {', '.join(header)})"
            ) from None
        label_column = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    elif task.headerless_columns:
        body = rows
        field_columns, label_column = [task.headerless_columns[0]], task.headerless_columns[1]
    else:
        raise UserError(
            f"{path} has no header naming glue/{task.name}'s columns ({', '.join(task.fields)})"
        )
    if needs_labels and label_column is None:
        raise UserError(
            f"{path} has no label column", f"expected one of: {', '.join(LABEL_COLUMNS)}"
        )
    width = max(field_columns + ([label_column] if label_column is not None else [])) + 1
    columns: dict[str, list] = {name: [] for name in task.fields}
    columns["label"] = []
    for number, row in enumerate(body, 2 if body is not rows else 1):
        if len(row) < width:
            raise UserError(
                f"{path}:{number} has {len(row)} columns, fewer than the {width} expected"
            )
        for name, column in zip(task.fields, field_columns, strict=True):
            columns[name].append(row[column])
        label = (
            _label_id(task, row[label_column], f"{path}:{number}")
            if label_column is not None
            else -1
        )
        columns["label"].append(label)
    columns["idx"] = list(range(len(body)))
    return datasets.Dataset.from_dict(columns)


def is_labelled(split: str) -> bool:
    """A benchmark's test splits carry no labels: its own server scores the predictions."""
    return not split.startswith("test")


def split_source(task: GlueTask, keys: GlueKeys) -> SplitSource:
    """Where the task's splits are: files with the task's fields, `label` (-1 when
    unlabelled) and `idx`."""

    def read(path: Path, split: str) -> datasets.Dataset:
        return read_local_split(task, path, needs_labels=is_labelled(split))

    def from_hub(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        return dataset.select_columns([*task.fields, "label", "idx"])

    hub = HubCopy("nyu-mll/glue", task.name, from_hub)
    return SplitSource(keys, read, SPLIT_FILES, copy_folder=f"glue/{task.folder}", hub=hub)

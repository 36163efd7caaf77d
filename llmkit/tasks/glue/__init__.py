"""GLUE: sentence and sentence-pair classification (regression for STS-B) with GLUE's
official metrics. `data.py`: the tasks' fields and labels and the real TSV layouts;
`finetune.py`: the head, encoding, metrics, dev predictions and test submissions."""

from __future__ import annotations

from llmkit.data.known import GLUE_FOLDERS
from llmkit.tasks.kind import LocalCopyKeys, TaskKind


class GlueKeys(LocalCopyKeys):
    test_file: str | None = None  # test predictions in GLUE's submission format


KIND = TaskKind(
    name="glue",
    tasks=tuple(GLUE_FOLDERS),
    keys=GlueKeys,
    head="AutoModelForSequenceClassification",
)

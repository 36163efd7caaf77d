"""CLUE (Chinese Language Understanding Evaluation): its classification tasks, fine-tuned as
GLUE's are (the same head, encoding, accuracy metric and dev predictions; tasks/glue). `data.py`:
each task's fields, labels and CLUE's own download layout (JSON lines); `finetune.py`: the
task's splits and CLUE's submission format. CLUE's reading-comprehension and NER tasks are
tasks of the qa and ner kinds (qa/cmrc2018, ner/cluener)."""

from __future__ import annotations

from llmkit.tasks.kind import LocalCopyKeys, TaskKind

# Task names, each with its folder in CLUE's download layout (<name>_public/train.json, ...).
TASKS = ("afqmc", "tnews", "iflytek", "ocnli", "cmnli", "cluewsc2020", "csl")


class ClueKeys(LocalCopyKeys):
    test_file: str | None = None  # test predictions in CLUE's submission format


KIND = TaskKind(
    name="clue",
    tasks=TASKS,
    keys=ClueKeys,
    head="AutoModelForSequenceClassification",
)

"""Extractive question answering (SQuAD v1.1; CMRC 2018, CLUE's Chinese reading
comprehension): long contexts in overlapping windows, spans found over all of them, the
task's official exact match and F1. `data.py`: SQuAD's JSON, the
windows and the span search (shared with `llmkit answer`); `finetune.py`: the head, the
encoding and the evaluation."""

from __future__ import annotations

from pydantic import Field

from llmkit.tasks.kind import LocalCopyKeys, TaskKind


class QaKeys(LocalCopyKeys):
    doc_stride: int = Field(128, ge=1)  # context tokens shared by neighbouring windows
    max_answer_tokens: int = Field(30, ge=1)  # longest answer span considered


KIND = TaskKind(
    name="qa",
    tasks=("squad", "cmrc2018"),
    keys=QaKeys,
    head="AutoModelForQuestionAnswering",
)

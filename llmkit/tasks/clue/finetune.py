"""CLUE's classification tasks: fine-tuned by GLUE's `classify` (the same head, encoding,
accuracy and dev predictions), with test predictions in CLUE's submission format."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np

from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.clue.data import ClueTask, clue_task, split_source
from llmkit.tasks.glue.finetune import Benchmark, classify
from llmkit.tasks.prepared import PreparedTask


def main_metric(recipe: Recipe) -> str:
    return "eval_accuracy"


def prepare(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    return classify(recipe, CLUE, eval_only=eval_only)


def _write_submission(
    folder: Path, task: ClueTask, split: str, rows: datasets.Dataset, predictions
) -> None:
    """CLUE's submission format: <task>_predict.json, one {"id", "label"} per line."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"id": index, "label": task.labels[int(value)]}, ensure_ascii=False)
        for index, value in zip(rows["idx"], np.asarray(predictions), strict=True)
    ]
    write_atomic(folder / f"{task.name}_predict.json", "\n".join(lines) + "\n")


CLUE = Benchmark("CLUE", clue_task, split_source, _write_submission)

"""Extractive QA (SQuAD v1.1, CMRC 2018): a span-prediction head, long contexts cut into
overlapping windows, and the task's official exact match / F1 over the answers recovered
from all windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForQuestionAnswering, Trainer

from llmkit.data.collators import DynamicPaddingCollator
from llmkit.metrics import QaMetric
from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.prepared import PreparedTask, model_and_tokenizer
from llmkit.tasks.qa.data import (
    Windows,
    best_answers,
    prediction_windows,
    split_source,
    training_windows,
)
from llmkit.tasks.splits import load_splits

QUESTION_COLUMNS = ["id", "title", "context", "question", "answers"]
DESCRIPTIONS = {
    "squad": "SQuAD v1.1 extractive question answering",
    "cmrc2018": "CMRC 2018 extractive question answering (Chinese)",
}


def main_metric(recipe: Recipe) -> str:
    return "eval_f1"


def prepare(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    keys = recipe.task
    task = keys.name.removeprefix("qa/")
    splits = load_splits(split_source(keys), eval_only=eval_only)
    train, validation = splits.train, splits.dev

    model, tokenizer, max_length = model_and_tokenizer(recipe, AutoModelForQuestionAnswering)
    windows = Windows(max_length=max_length, stride=keys.doc_stride)
    windows.check()

    def labelled(dataset):
        return dataset.map(
            lambda batch: training_windows(batch, tokenizer, windows),
            batched=True,
            remove_columns=QUESTION_COLUMNS,
            desc="windows",
        )

    to_predict = validation.map(
        lambda batch: prediction_windows(batch, tokenizer, windows, batch["id"]),
        batched=True,
        remove_columns=QUESTION_COLUMNS,
        desc="windows",
    )

    def evaluate(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
        output = trainer.predict(to_predict.remove_columns(["example_id", "offset_mapping"]))
        start_scores, end_scores = output.predictions[:2]
        answers = best_answers(
            dict(zip(validation["id"], validation["context"], strict=True)),
            to_predict["example_id"],
            to_predict["offset_mapping"],
            np.asarray(start_scores),
            np.asarray(end_scores),
            max_answer_tokens=keys.max_answer_tokens,
        )
        predicted = {key: found[0].text for key, found in answers.items()}
        scores = QaMetric(config_name=task, keep_in_memory=True).compute(
            predictions=[predicted[key] for key in validation["id"]],
            references=[a["text"] for a in validation["answers"]],
        )
        if trainer.is_world_process_zero():
            # The official evaluation script reads exactly this: {question id: answer text}.
            write_atomic(
                run_dir / "dev_predictions.json",
                json.dumps(predicted, ensure_ascii=False, indent=1) + "\n",
            )
        return {
            "eval_exact_match": scores["exact_match"],
            "eval_f1": scores["f1"],
            "eval_examples": len(validation),
            "eval_windows": len(to_predict),
        }

    return PreparedTask(
        name=keys.name,
        model=model,
        tokenizer=tokenizer,
        train=labelled(train) if train is not None else None,
        evaluation=labelled(validation),
        collator=DynamicPaddingCollator(tokenizer),
        evaluate=evaluate,
        description=DESCRIPTIONS[task],
        train_examples=len(train) if train is not None else None,
    )

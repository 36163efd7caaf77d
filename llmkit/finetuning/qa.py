"""SQuAD v1.1 extractive QA: a span-prediction head, long contexts cut into overlapping
windows, and the official exact match / F1 over the answers recovered from all windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForQuestionAnswering, Trainer

from llmkit.data.collators import DynamicPaddingCollator
from llmkit.finetuning import PreparedTask, model_and_tokenizer, train_and_validation
from llmkit.metrics import SquadMetric
from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.squad import (
    Windows,
    best_answers,
    load_squad_split,
    prediction_windows,
    training_windows,
)

QUESTION_COLUMNS = ["id", "title", "context", "question", "answers"]


def prepare_qa(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    spec = recipe.task
    local = any((spec.data_dir, spec.train_file, spec.validation_file))

    def load(split: str, file: str | None):
        return load_squad_split(split, data_dir=spec.data_dir, file=file, local_only=local)

    train, validation = train_and_validation(recipe, load, eval_only=eval_only)

    model, tokenizer, max_length = model_and_tokenizer(recipe, AutoModelForQuestionAnswering)
    windows = Windows(max_length=max_length, stride=spec.doc_stride)
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
            max_answer_tokens=spec.max_answer_tokens,
        )
        predicted = {key: found[0].text for key, found in answers.items()}
        scores = SquadMetric(keep_in_memory=True).compute(
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
        name="qa/squad",
        model=model,
        tokenizer=tokenizer,
        train=labelled(train) if train is not None else None,
        evaluation=labelled(validation),
        collator=DynamicPaddingCollator(tokenizer),
        evaluate=evaluate,
        description="SQuAD v1.1 extractive question answering",
        loads_with="AutoModelForQuestionAnswering",
        main_metric="eval_f1",
        train_examples=len(train) if train is not None else None,
    )

"""GLUE: sequence classification (or regression, STS-B) with GLUE's official metrics, dev
predictions, and test predictions in GLUE's submission format. CLUE's classification tasks
are fine-tuned by the same `classify` (tasks/clue/finetune.py).

Fast by default: examples are tokenized once without padding, batched with dynamic padding
and grouped by length, truncated to the model's positions, and evaluation keeps only each
batch's predicted labels (never the logits).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import AutoModelForSequenceClassification, EvalPrediction, Trainer

from llmkit.data.collators import DynamicPaddingCollator
from llmkit.metrics import glue_metric
from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.glue.data import GlueTask, glue_task, split_source
from llmkit.tasks.prepared import PreparedTask, model_and_tokenizer
from llmkit.tasks.splits import SplitSource, load_splits
from llmkit.training import without_timings


def tokenize_split(dataset, task: GlueTask, tokenizer, max_length: int) -> datasets.Dataset:
    """Token ids without padding (the collator pads each batch to its own longest example)."""

    def encode(batch):
        texts = [batch[field] for field in task.fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    encoded = dataset.map(encode, batched=True, remove_columns=list(task.fields), desc="tokenize")
    return encoded.rename_column("label", "labels")


def predictions_of(logits, labels):
    """Keep the predicted label (or score) of each example, not its logits."""
    if logits.shape[-1] == 1:
        return logits[..., 0].float()
    return logits.argmax(-1)


def metric_function(task: GlueTask):
    metric = glue_metric(task.name)

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        return metric.compute(predictions=prediction.predictions, references=prediction.label_ids)

    return compute


def label_text(task: GlueTask, value) -> str:
    if task.is_regression:
        return f"{float(value):.3f}"
    return task.labels[int(value)]


def submission_text(task: GlueTask, value) -> str:
    # GLUE's server wants label names for the entailment tasks, ids or scores elsewhere.
    if task.name in ("mnli", "qnli", "rte"):
        return task.labels[int(value)]
    return f"{float(value):.3f}" if task.is_regression else str(int(value))


def main_metric(recipe: Recipe) -> str:
    """The metrics.json key that ranks runs: the task's first GLUE metric (MNLI: matched)."""
    task = glue_task(recipe.task.name)
    matched = "matched_" if len(task.validation_splits) > 1 else ""
    return f"eval_{matched}{task.main_metric}"


@dataclass(frozen=True)
class Benchmark:
    """What differs between the classification benchmarks `classify` serves (GLUE, CLUE):
    where a task's declaration and data are, and the test predictions' format."""

    name: str
    task_of: Callable[[str], GlueTask]  # task.name → the task's fields and labels
    split_source: Callable[[GlueTask, Any], SplitSource]  # (task, task keys) → its splits
    # (folder, task, split name, split rows, predictions): the submission file, written
    write_submission: Callable[[Path, GlueTask, str, datasets.Dataset, Any], None]


def prepare(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    return classify(recipe, GLUE, eval_only=eval_only)


def classify(recipe: Recipe, benchmark: Benchmark, *, eval_only: bool) -> PreparedTask:
    """A sequence-classification (or regression) task of GLUE's shape: the task's text fields
    and labels, its splits, dev predictions, and test predictions in the benchmark's format."""
    task = benchmark.task_of(recipe.task.name)
    source = benchmark.split_source(task, recipe.task)
    splits = load_splits(
        source,
        eval_only=eval_only,
        validation=task.validation_splits,
        test=task.test_splits,
    )
    train, validation, test = splits.train, splits.validation, splits.test
    labels = task.labels or ("score",)
    model, tokenizer, max_length = model_and_tokenizer(
        recipe,
        AutoModelForSequenceClassification,
        num_labels=task.num_labels,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type="regression" if task.is_regression else "single_label_classification",
    )
    encoded_dev = {
        split: tokenize_split(d, task, tokenizer, max_length) for split, d in validation.items()
    }
    encoded_test = {
        split: tokenize_split(d, task, tokenizer, max_length).remove_columns("labels")
        for split, d in test.items()
    }

    def evaluate(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for split, encoded in encoded_dev.items():
            prefix = (
                "eval" if len(encoded_dev) == 1 else f"eval_{split.removeprefix('validation_')}"
            )
            output = trainer.predict(encoded, metric_key_prefix=prefix)
            metrics.update(without_timings(output.metrics))
            metrics[f"{prefix}_examples"] = len(encoded)
            if not task.is_regression:
                majority = Counter(validation[split]["label"]).most_common(1)[0][1] / len(encoded)
                metrics[f"{prefix}_majority_accuracy"] = majority
            if trainer.is_world_process_zero():
                _write_predictions(
                    run_dir / f"{split.replace('validation', 'dev')}_predictions.tsv",
                    task,
                    validation[split],
                    output.predictions,
                )
        for split, encoded in encoded_test.items():
            output = trainer.predict(encoded)
            if trainer.is_world_process_zero():
                benchmark.write_submission(
                    run_dir / "test_predictions", task, split, test[split], output.predictions
                )
        return metrics

    head = "regression" if task.is_regression else f"{task.num_labels} labels"
    return PreparedTask(
        name=recipe.task.name,
        model=model,
        tokenizer=tokenizer,
        train=tokenize_split(train, task, tokenizer, max_length) if train is not None else None,
        evaluation=next(iter(encoded_dev.values())),
        collator=DynamicPaddingCollator(tokenizer),
        evaluate=evaluate,
        description=f"{benchmark.name} {task.submission_name} ({head})",
        compute_metrics=metric_function(task),
        preprocess_logits_for_metrics=predictions_of,
    )


def _write_predictions(path: Path, task: GlueTask, split: datasets.Dataset, predictions) -> None:
    predictions = np.asarray(predictions)
    lines = ["index\tprediction\tlabel"]
    for index, predicted, label in zip(split["idx"], predictions, split["label"], strict=True):
        lines.append(f"{index}\t{label_text(task, predicted)}\t{label_text(task, label)}")
    write_atomic(path, "\n".join(lines) + "\n")


def _write_submission(
    folder: Path, task: GlueTask, split: str, rows: datasets.Dataset, predictions
) -> None:
    """GLUE's submission format: <TASK>.tsv (MNLI: -m, -mm) with index and prediction."""
    suffix = {"test_matched": "-m", "test_mismatched": "-mm"}.get(split, "")
    path = folder / f"{task.submission_name}{suffix}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["index\tprediction"] + [
        f"{index}\t{submission_text(task, value)}"
        for index, value in enumerate(np.asarray(predictions))
    ]
    write_atomic(path, "\n".join(lines) + "\n")


GLUE = Benchmark("GLUE", glue_task, split_source, _write_submission)

"""`llmkit finetune`: fine-tune a checkpoint on a GLUE task and evaluate it with GLUE's metrics.

Fast by default: examples are tokenized once without padding, batched with dynamic padding
and grouped by length, truncated to the model's positions, and evaluation keeps only each
batch's predicted labels (never the logits).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    EvalPrediction,
)

from llmkit.data.collators import DynamicPaddingCollator
from llmkit.errors import UserError
from llmkit.fast_path import prepare_for_training
from llmkit.metrics import glue_metric
from llmkit.models import (
    check_model_fits,
    checkpoint_options,
    model_positions,
    require_model_dir,
)
from llmkit.recipe import Recipe, TaskConfig
from llmkit.rundir import (
    check_output_dir,
    claim_output_dir,
    resolve_resume,
    save_metrics,
    save_recipe,
    write_atomic,
    write_card,
)
from llmkit.tasks.glue import GlueTask, glue_task, load_split
from llmkit.tokenizer import load_tokenizer, save_tokenizer
from llmkit.training import build_trainer, settings_used, train_guarded, training_arguments


def load_classifier(path: str, task: GlueTask, *, trust_remote_code: bool = False):
    folder = require_model_dir(path, "model.path")
    labels = task.labels or ("score",)
    options = checkpoint_options(folder, trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(
            folder,
            num_labels=task.num_labels,
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            problem_type="regression" if task.is_regression else "single_label_classification",
            trust_remote_code=trust_remote_code,
        )
        return AutoModelForSequenceClassification.from_pretrained(folder, config=config, **options)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load {path} as a sequence classifier: {e}") from e


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


def _limit(dataset, count: int | None):
    return (
        dataset.select(range(min(count, len(dataset))))
        if count and dataset is not None
        else dataset
    )


def label_text(task: GlueTask, value) -> str:
    if task.is_regression:
        return f"{float(value):.3f}"
    return task.labels[int(value)]


def submission_text(task: GlueTask, value) -> str:
    # GLUE's server wants label names for the entailment tasks, ids or scores elsewhere.
    if task.name in ("mnli", "qnli", "rte"):
        return task.labels[int(value)]
    return f"{float(value):.3f}" if task.is_regression else str(int(value))


def load_task_splits(task: GlueTask, spec: TaskConfig, *, eval_only: bool):
    """(train or None, {validation split: data}, {test split: data}), limited as asked."""
    # Once the user points at local files, a split without one is absent, not fetched.
    local = any((spec.data_dir, spec.train_file, spec.validation_file, spec.test_file))

    def load(split: str, file: str | None):
        return load_split(task, split, data_dir=spec.data_dir, file=file, local_only=local)

    train = None if eval_only else _limit(load("train", spec.train_file), spec.max_train_examples)
    validation = {split: load(split, spec.validation_file) for split in task.validation_splits}
    validation = {
        split: _limit(data, spec.max_eval_examples)
        for split, data in validation.items()
        if data is not None
    }
    if not validation:
        raise UserError(f"glue/{task.name} has no validation (dev) split here")
    test = {split: load(split, spec.test_file) for split in task.test_splits}
    return train, validation, {split: data for split, data in test.items() if data is not None}


def run_finetune(
    recipe: Recipe,
    *,
    output_dir: Path | None = None,
    overwrite: bool = False,
    resume: str | None = None,
    eval_only: bool = False,
) -> dict[str, Any]:
    started = time.perf_counter()
    if not recipe.task.name:
        raise UserError("the recipe sets no task.name", "e.g. --set task.name=glue/sst2")
    task = glue_task(recipe.task.name)
    if not recipe.model.path:
        raise UserError(
            "finetune needs model.path: an llmkit run directory or a local checkpoint",
            "e.g. --set model.path=runs/bert-tiny",
        )
    run_dir = Path(output_dir) if output_dir else recipe.resolved_output_dir
    check_output_dir(run_dir, overwrite=overwrite, resume=resume is not None)
    resume_from = resolve_resume(run_dir, resume)

    spec = recipe.task
    train, validation, test = load_task_splits(task, spec, eval_only=eval_only)

    require_model_dir(recipe.model.path, "model.path")
    trust = recipe.model.trust_remote_code
    tokenizer = load_tokenizer(recipe.tokenizer.path or recipe.model.path, trust_remote_code=trust)
    model = load_classifier(recipe.model.path, task, trust_remote_code=trust)
    prepare_for_training(model, recipe.train)
    positions = model_positions(model.config)
    max_length = min(spec.max_length or positions, positions)
    check_model_fits(model.config, len(tokenizer), max_length)
    if tokenizer.pad_token_id is None:
        raise UserError("the tokenizer has no padding token, which batching needs")
    model.config.pad_token_id = tokenizer.pad_token_id

    encoded_train = (
        tokenize_split(train, task, tokenizer, max_length) if train is not None else None
    )
    encoded_dev = {
        split: tokenize_split(d, task, tokenizer, max_length) for split, d in validation.items()
    }
    encoded_test = {
        split: tokenize_split(d, task, tokenizer, max_length).remove_columns("labels")
        for split, d in test.items()
    }

    args = training_arguments(
        recipe.train,
        run_dir,
        seed=recipe.seed,
        evaluate=True,
        evaluate_first=False,
        group_by_length=True,
    )
    first_dev = next(iter(encoded_dev.values()))
    trainer = build_trainer(
        model,
        args,
        train_dataset=encoded_train,
        eval_dataset=first_dev,
        collator=DynamicPaddingCollator(tokenizer),
        tokenizer=tokenizer,
        compute_metrics=metric_function(task),
        preprocess_logits_for_metrics=predictions_of,
    )
    if trainer.is_world_process_zero():
        claim_output_dir(run_dir, overwrite=overwrite, resume=resume is not None)
        save_recipe(run_dir, recipe)

    metrics: dict[str, Any] = {
        "command": "finetune",
        "output_dir": str(run_dir),
        "task": f"glue/{task.name}",
        **settings_used(trainer.args),
    }
    if encoded_train is not None:
        result = train_guarded(trainer, resume_from)
        metrics.update(
            train_examples=len(encoded_train),
            steps=trainer.state.global_step,
            train_loss=result.training_loss,
            train_runtime_s=result.metrics.get("train_runtime", 0.0),
        )

    # Length grouping speeds training, but transformers applies it to evaluation too, and
    # then `predict` returns predictions in that shuffled order. Predictions written per
    # example must follow the dataset's order.
    trainer.args.train_sampling_strategy = "sequential"
    for split, encoded in encoded_dev.items():
        prefix = "eval" if len(encoded_dev) == 1 else f"eval_{split.removeprefix('validation_')}"
        output = trainer.predict(encoded, metric_key_prefix=prefix)
        metrics.update(
            {k: v for k, v in output.metrics.items() if not k.endswith(("_runtime", "_per_second"))}
        )
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
            _write_submission(
                run_dir / "test_predictions" / _submission_file(task, split),
                task,
                output.predictions,
            )
    metrics["wall_seconds"] = time.perf_counter() - started

    if encoded_train is not None:
        trainer.save_model(str(run_dir))
    if trainer.is_world_process_zero():
        (run_dir / "training_args.bin").unlink(missing_ok=True)  # no pickles in a run directory
        if encoded_train is not None:
            save_tokenizer(tokenizer, run_dir)
            trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
        main = (
            f"eval_{task.main_metric}"
            if len(encoded_dev) == 1
            else f"eval_matched_{task.main_metric}"
        )
        verb = "evaluated" if eval_only else "fine-tuned"
        kind = "regression" if task.is_regression else f"{task.num_labels} labels"
        write_card(
            run_dir,
            command="finetune",
            title=f"{recipe.name}: glue/{task.name}",
            what=f"`{recipe.model.path}` {verb} on GLUE {task.folder} ({kind}) with llmkit. Load "
            f'it with `AutoModelForSequenceClassification.from_pretrained("{run_dir}")`.',
            recipe=recipe,
            results={k: v for k, v in metrics.items() if k.startswith("eval_") or k == main},
        )
        save_metrics(run_dir, metrics)
    return metrics


def _submission_file(task: GlueTask, split: str) -> str:
    suffix = {"test_matched": "-m", "test_mismatched": "-mm"}.get(split, "")
    return f"{task.submission_name}{suffix}.tsv"


def _write_predictions(path: Path, task: GlueTask, split: datasets.Dataset, predictions) -> None:
    predictions = np.asarray(predictions)
    lines = ["index\tprediction\tlabel"]
    for index, predicted, label in zip(split["idx"], predictions, split["label"], strict=True):
        lines.append(f"{index}\t{label_text(task, predicted)}\t{label_text(task, label)}")
    write_atomic(path, "\n".join(lines) + "\n")


def _write_submission(path: Path, task: GlueTask, predictions) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["index\tprediction"] + [
        f"{index}\t{submission_text(task, value)}"
        for index, value in enumerate(np.asarray(predictions))
    ]
    write_atomic(path, "\n".join(lines) + "\n")

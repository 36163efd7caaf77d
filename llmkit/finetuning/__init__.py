"""How each kind of downstream task is fine-tuned: its model head, encoding, batching,
metrics and prediction files. `commands/finetune.py` runs the steps every task shares
(run directory, Trainer, training, saving); a task kind fills in a `PreparedTask`.

Task names carry their kind as a prefix: `glue/sst2`, `qa/squad`, `ner/conll`,
`seq2seq/summarization`, `seq2seq/translation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel, PreTrainedTokenizerFast, Trainer

from llmkit.errors import UserError, did_you_mean
from llmkit.recipe import Recipe


@dataclass
class PreparedTask:
    """Everything the shared fine-tuning steps need from one task."""

    name: str  # the full task name, e.g. qa/squad
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    train: datasets.Dataset | None  # encoded; None when only evaluating
    evaluation: datasets.Dataset  # encoded, for the evaluations during training
    collator: Callable
    # After training: predict on every evaluation split, write the prediction files into the
    # run directory (main process only), and return the metrics.
    evaluate: Callable[[Trainer, Path], dict[str, Any]]
    description: str  # for the model card: the data and the head, e.g. "GLUE SST-2 (2 labels)"
    loads_with: str  # the transformers class that loads the result, for the model card
    main_metric: str  # the key in metrics.json that ranks runs, e.g. eval_f1
    compute_metrics: Callable | None = None  # for evaluations during training
    preprocess_logits_for_metrics: Callable | None = None
    group_by_length: bool = True  # variable-length examples: batch similar lengths together
    generates: bool = False  # evaluation decodes text (encoder-decoder): a Seq2SeqTrainer
    generation: dict[str, Any] = field(default_factory=dict)  # Seq2SeqTrainingArguments
    train_examples: int | None = None  # when `train` holds more rows than examples (QA windows)


def task_names() -> list[str]:
    from llmkit.tasks.glue import TASKS

    return [
        *(f"glue/{name}" for name in TASKS),
        "qa/squad",
        "ner/conll",
        "seq2seq/summarization",
        "seq2seq/translation",
    ]


def check_task_name(recipe: Recipe) -> str:
    """task.name, if it names a task (what --dry-run can check without any data)."""
    name = recipe.task.name
    if not name:
        raise UserError("the recipe sets no task.name", "e.g. --set task.name=glue/sst2")
    if name not in task_names():
        names = task_names()
        raise UserError(
            f"unknown task '{name}'{did_you_mean(name, names)}", f"tasks: {', '.join(names)}"
        )
    return name


def prepare_task(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    """The task named by `task.name`, loaded, encoded and given its model."""
    kind = check_task_name(recipe).split("/", 1)[0]
    if kind == "glue":
        from llmkit.finetuning.glue import prepare_glue as prepare
    elif kind == "qa":
        from llmkit.finetuning.qa import prepare_qa as prepare
    elif kind == "ner":
        from llmkit.finetuning.ner import prepare_ner as prepare
    else:
        from llmkit.finetuning.seq2seq import prepare_seq2seq as prepare
    return prepare(recipe, eval_only=eval_only)


def limit(dataset: datasets.Dataset | None, count: int | None) -> datasets.Dataset | None:
    """The first `count` rows (task.max_train_examples / max_eval_examples), for quick runs."""
    if not count or dataset is None:
        return dataset
    return dataset.select(range(min(count, len(dataset))))


def train_and_validation(
    recipe: Recipe, load: Callable[[str, str | None], datasets.Dataset | None], *, eval_only: bool
) -> tuple[datasets.Dataset | None, datasets.Dataset]:
    """The training split (None when only evaluating) and the validation split, each cut to
    task.max_*_examples. `load(split, file)` reads one split, None when it is not given."""
    spec = recipe.task
    where = "set task.{}_file (or task.data_dir, or task.dataset online)"
    train = None
    if not eval_only:
        train = limit(load("train", spec.train_file), spec.max_train_examples)
        if train is None:
            raise UserError(f"no training data for {spec.name}", where.format("train"))
    validation = limit(load("validation", spec.validation_file), spec.max_eval_examples)
    if validation is None:
        raise UserError(f"no validation data for {spec.name}", where.format("validation"))
    return train, validation


def checkpoint_path(recipe: Recipe) -> str:
    """model.path, which every task but seq2seq needs (seq2seq may build a new model)."""
    if not recipe.model.path:
        raise UserError(
            f"{recipe.task.name} needs model.path: an llmkit run directory or a local checkpoint",
            "e.g. --set model.path=runs/bert-tiny",
        )
    return recipe.model.path


def model_and_tokenizer(recipe: Recipe, auto_class, **config_changes):
    """model.path loaded with the head `auto_class` (config fields changed as given), its
    tokenizer (tokenizer.path wins), and the longest sequence both allow."""
    from llmkit.models import check_model_fits, load_with_head, model_positions
    from llmkit.tokenizer import load_tokenizer

    path = checkpoint_path(recipe)
    trust = recipe.model.trust_remote_code
    tokenizer = load_tokenizer(recipe.tokenizer.path or path, trust_remote_code=trust)
    model = load_with_head(path, auto_class, trust_remote_code=trust, **config_changes)
    positions = model_positions(model.config)
    max_length = min(recipe.task.max_length or positions, positions)
    check_model_fits(model.config, len(tokenizer), max_length)
    if tokenizer.pad_token_id is None:
        raise UserError("the tokenizer has no padding token, which batching needs")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, max_length

"""What a task kind's `finetune.prepare` hands to `finetune`: a `PreparedTask` (model with its
head, encoded data, collator, metrics, the final evaluation), and the checkpoint loading most
kinds share.

`commands/finetune.py` runs the steps every task shares (run directory, Trainer, training,
saving); each kind's `finetune.prepare` fills in the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel, PreTrainedTokenizerFast, Trainer

from llmkit.adapters import quantization_options
from llmkit.errors import UserError
from llmkit.models import check_model_fits, load_with_head, model_positions
from llmkit.recipe import Recipe
from llmkit.tokenizer import load_tokenizer


@dataclass
class PreparedTask:
    """Everything the shared fine-tuning steps need from one task."""

    name: str  # the full task name, e.g. qa/squad
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    train: datasets.Dataset | None  # encoded; None when only evaluating
    evaluation: datasets.Dataset  # encoded, for the evaluations during training
    collator: Callable | None  # None: the trainer's own
    # After training: predict on every evaluation split, write the prediction files into the
    # run directory (main process only), and return the metrics.
    evaluate: Callable[[Trainer, Path], dict[str, Any]]
    description: str  # for the model card: the data and the head, e.g. "GLUE SST-2 (2 labels)"
    compute_metrics: Callable | None = None  # for evaluations during training
    preprocess_logits_for_metrics: Callable | None = None
    group_by_length: bool = True  # variable-length examples: batch similar lengths together
    # The Trainer subclass and its arguments class when plain Trainer does not do (encoder-
    # decoders evaluate by generating: Seq2SeqTrainer; SFT: TRL's SFTTrainer), and the
    # fields `arguments_class` has beyond TrainingArguments'.
    trainer_class: type[Trainer] | None = None
    arguments_class: type | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    # The trainer computes the loss without the whole batch's logits itself (TRL's fused LM
    # head), so llmkit's chunked loss is not put in.
    trainer_has_fused_loss: bool = False
    added_token_ids: list[int] = field(default_factory=list)  # new vocabulary rows to train
    train_examples: int | None = None  # when `train` holds more rows than examples (QA windows)


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
    path = checkpoint_path(recipe)
    trust = recipe.model.trust_remote_code
    tokenizer = load_tokenizer(recipe.tokenizer.path or path, trust_remote_code=trust)
    quantized = quantization_options(recipe.model.lora)
    model = load_with_head(
        path, auto_class, trust_remote_code=trust, load_options=quantized, **config_changes
    )
    positions = model_positions(model.config)
    max_length = min(recipe.task.max_length or positions, positions)
    check_model_fits(model.config, len(tokenizer), max_length)
    if tokenizer.pad_token_id is None:
        raise UserError("the tokenizer has no padding token, which batching needs")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, max_length

"""Summarization and translation with encoder-decoder models (T5 or BART families, built
from the recipe or loaded from model.path): teacher-forced training, then generation scored
with ROUGE (summarization) or sacreBLEU (translation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    EvalPrediction,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
)

from llmkit.errors import UserError
from llmkit.metrics import GenerationMetric
from llmkit.models import build_model_config, special_token_ids
from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.prepared import PreparedTask, model_and_tokenizer
from llmkit.tasks.seq2seq.data import split_source
from llmkit.tasks.splits import load_splits
from llmkit.tokenizer import load_tokenizer
from llmkit.training import without_timings

ENCODER_DECODER_FAMILIES = ("t5", "bart")


def new_model(recipe: Recipe):
    """A randomly initialised T5 or BART sized by the recipe, for tokenizer.path's tokenizer."""
    if recipe.model.family not in ENCODER_DECODER_FAMILIES:
        raise UserError(
            f"seq2seq tasks need an encoder-decoder: model.family t5 or bart, not "
            f"{recipe.model.family}",
            "or set model.path to an encoder-decoder checkpoint",
        )
    if not recipe.tokenizer.path:
        raise UserError(
            f"a new {recipe.model.family} model needs tokenizer.path",
            "train one first: llmkit tokenize --recipe tokenizer-byte-bpe -o runs/tok",
        )
    tokenizer = load_tokenizer(recipe.tokenizer.path)
    special = special_token_ids(tokenizer)
    if special["pad_token_id"] is None or special["eos_token_id"] is None:
        raise UserError(f"the tokenizer in {recipe.tokenizer.path} needs padding and end tokens")
    longest = max(recipe.task.max_length or recipe.data.seq_len, recipe.task.max_target_length + 2)
    config = build_model_config(
        recipe.model, tokens=len(tokenizer), seq_len=longest, special_ids=special
    )
    model = AutoModelForSeq2SeqLM.from_config(config, attn_implementation=recipe.model.attention)
    return model, tokenizer, recipe.task.max_length or recipe.data.seq_len


def main_metric(recipe: Recipe) -> str:
    return "eval_rougeL" if recipe.task.name.endswith("summarization") else "eval_bleu"


def prepare(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    keys = recipe.task
    task = keys.name.split("/", 1)[1]  # summarization or translation
    splits = load_splits(split_source(keys), eval_only=eval_only)
    train, validation = splits.train, splits.dev

    if recipe.model.path:
        model, tokenizer, max_length = model_and_tokenizer(recipe, AutoModelForSeq2SeqLM)
    else:
        model, tokenizer, max_length = new_model(recipe)
    if not model.config.is_encoder_decoder:
        raise UserError(f"{recipe.model.path} is not an encoder-decoder model (T5, BART, ...)")
    eos = special_token_ids(tokenizer)["eos_token_id"]
    # What `generate` does after training (and `llmkit generate` later): saved with the model.
    generation = model.generation_config
    generation.max_new_tokens = keys.max_target_length
    generation.max_length = None
    generation.num_beams = keys.num_beams
    generation.eos_token_id = eos
    generation.pad_token_id = tokenizer.pad_token_id
    generation.decoder_start_token_id = model.config.decoder_start_token_id

    def encode(batch):
        sources = [keys.source_prefix + text for text in batch["source"]]
        encoded = tokenizer(sources, truncation=True, max_length=max_length)
        targets = tokenizer(
            text_target=batch["target"], truncation=True, max_length=keys.max_target_length
        )["input_ids"]
        # Every target ends with the end token, so that the model learns where to stop.
        encoded["labels"] = [
            ids if ids and ids[-1] == eos else ids[: keys.max_target_length - 1] + [eos]
            for ids in targets
        ]
        return encoded

    def encoded(dataset):
        return dataset.map(
            encode, batched=True, remove_columns=["source", "target"], desc="tokenize"
        )

    dev = encoded(validation)
    metric = GenerationMetric(config_name=task, keep_in_memory=True)

    def texts(token_ids) -> list[str]:
        ids = np.where(np.asarray(token_ids) < 0, tokenizer.pad_token_id, token_ids)
        return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def scores(prediction: EvalPrediction) -> dict[str, float]:
        # Scored against the reference texts themselves, not their truncated token ids;
        # evaluation keeps the dataset's order (no length grouping, see below).
        generated = texts(prediction.predictions)
        lengths = [
            np.count_nonzero((row >= 0) & (row != tokenizer.pad_token_id))
            for row in np.asarray(prediction.predictions)
        ]
        return {
            **metric.compute(predictions=generated, references=validation["target"]),
            "gen_len": float(np.mean(lengths)),
        }

    def evaluate(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
        output = trainer.predict(dev, metric_key_prefix="eval")
        if trainer.is_world_process_zero():
            generated = texts(output.predictions)
            rows = zip(validation["source"], validation["target"], generated, strict=True)
            write_atomic(
                run_dir / "dev_predictions.jsonl",
                "".join(
                    json.dumps({"source": s, "reference": r, "prediction": p}, ensure_ascii=False)
                    + "\n"
                    for s, r, p in rows
                ),
            )
        return {**without_timings(output.metrics), "eval_examples": len(validation)}

    what = (
        "summarization"
        if task == "summarization"
        else (f"translation ({keys.source_lang} → {keys.target_lang})")
    )
    return PreparedTask(
        name=keys.name,
        model=model,
        tokenizer=tokenizer,
        train=encoded(train) if train is not None else None,
        evaluation=dev,
        collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        evaluate=evaluate,
        description=f"{what} ({model.config.model_type})",
        compute_metrics=scores,
        trainer_class=Seq2SeqTrainer,
        arguments_class=Seq2SeqTrainingArguments,
        # transformers would group evaluation batches by length too, and scores() pairs
        # predictions with references by position
        group_by_length=False,
        arguments={"predict_with_generate": True},
    )

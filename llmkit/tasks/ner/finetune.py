"""CoNLL named-entity recognition: a token-classification head over sub-word tokens, word
labels carried to first sub-tokens, and entity-level precision / recall / F1 (seqeval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    EvalPrediction,
    Trainer,
)

from llmkit.checkpoints import require_model_dir
from llmkit.errors import UserError
from llmkit.metrics import EntityMetric
from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.ner.data import IGNORED, align_labels, label_names, split_source, word_tags
from llmkit.tasks.prepared import PreparedTask, checkpoint_path, model_and_tokenizer
from llmkit.tasks.splits import load_splits


def _tag_set(recipe: Recipe, train, validation) -> list[str]:
    """Training fixes the tag set; evaluating a fine-tuned tagger uses the one it was saved
    with (any other model is evaluated with a new, untrained head: a baseline)."""
    config = AutoConfig.from_pretrained(require_model_dir(checkpoint_path(recipe), "model.path"))
    tagger = any(a.endswith("ForTokenClassification") for a in config.architectures or [])
    if train is None and tagger:
        names = [config.id2label[i] for i in range(len(config.id2label))]
    else:
        names = label_names((train if train is not None else validation)["tags"])
    unknown = {t for sentence in validation["tags"] for t in sentence} - set(names)
    if unknown:
        raise UserError(
            f"the evaluation data has tags the model does not know: {', '.join(sorted(unknown))}",
            f"known tags: {', '.join(names)}",
        )
    return names


DATASET_NAMES = {"ner/conll": "CoNLL", "ner/cluener": "CLUENER2020"}


def main_metric(recipe: Recipe) -> str:
    return "eval_f1"


def prepare(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    splits = load_splits(split_source(recipe.task), eval_only=eval_only)
    train, validation = splits.train, splits.dev
    names = _tag_set(recipe, train, validation)
    model, tokenizer, max_length = model_and_tokenizer(
        recipe,
        AutoModelForTokenClassification,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    if not tokenizer.is_fast:
        raise UserError(f"{recipe.task.name} needs a fast tokenizer (word ids of each token)")
    index = {name: i for i, name in enumerate(names)}

    def encode(batch):
        encoded = tokenizer(
            batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
        )
        encoded["labels"] = [
            align_labels(
                encoded.word_ids(row),
                [index[t] for t in tags],
                names,
                all_subwords=recipe.task.label_all_subwords,
            )
            for row, tags in enumerate(batch["tags"])
        ]
        encoded["word_ids"] = [
            [-1 if w is None else w for w in encoded.word_ids(row)]
            for row in range(len(batch["tags"]))
        ]
        return encoded

    def encoded(dataset):
        return dataset.map(encode, batched=True, remove_columns=["tokens", "tags"], desc="tokenize")

    dev = encoded(validation)
    metric = EntityMetric(keep_in_memory=True)

    def first_token_tags(prediction: EvalPrediction) -> dict[str, float]:
        # during training: the words seen within max_length, by their first tokens' labels
        predicted, expected = [], []
        for tokens, labels in zip(prediction.predictions, prediction.label_ids, strict=True):
            kept = labels != IGNORED
            predicted.append([names[i] for i in tokens[kept]])
            expected.append([names[i] for i in labels[kept]])
        return {
            k: v
            for k, v in metric.compute(predictions=predicted, references=expected).items()
            if not k.startswith("f1_")
        }

    def evaluate(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
        output = trainer.predict(dev.remove_columns("word_ids"))
        predicted = [
            word_tags(
                list(tokens),
                [None if w < 0 else w for w in word_ids],
                len(words),
                names,
            )
            for tokens, word_ids, words in zip(
                np.asarray(output.predictions), dev["word_ids"], validation["tokens"], strict=True
            )
        ]
        scores = metric.compute(predictions=predicted, references=validation["tags"])
        if trainer.is_world_process_zero():
            # conlleval's input: word, gold tag, predicted tag; a blank line between sentences
            lines = []
            for words, gold, guess in zip(
                validation["tokens"], validation["tags"], predicted, strict=True
            ):
                lines += [f"{w} {g} {p}" for w, g, p in zip(words, gold, guess, strict=True)]
                lines.append("")
            write_atomic(run_dir / "dev_predictions.conll", "\n".join(lines))
        return {
            **{f"eval_{k}": v for k, v in scores.items()},
            "eval_examples": len(validation),
            "eval_entities": sum(t.startswith("B-") for s in validation["tags"] for t in s),
        }

    return PreparedTask(
        name=recipe.task.name,
        model=model,
        tokenizer=tokenizer,
        train=encoded(train).remove_columns("word_ids") if train is not None else None,
        evaluation=dev.remove_columns("word_ids"),
        collator=DataCollatorForTokenClassification(tokenizer),
        evaluate=evaluate,
        description=f"{DATASET_NAMES[recipe.task.name]} named-entity recognition "
        f"({len(names)} tags)",
        compute_metrics=first_token_tags,
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
    )

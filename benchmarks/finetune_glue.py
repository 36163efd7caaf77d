"""GLUE SST-2 fine-tuning: llmkit against the plain Hugging Face way, same model and data.

The plain way is HF's run_glue.py with its defaults: every example padded to 128 tokens
(pad_to_max_length), the default collator, random batches, and compute_metrics taking the
argmax of all evaluation logits. llmkit pads each batch to its longest example, groups
examples by length and keeps only predicted labels. Same pretrained model, data, learning
rate, epochs and batch size. The metric is wall time (tokenize + train + evaluate, model
loading included; lower is better); quality: both reach the same dev accuracy to within 0.03.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from benchmarks.harness import ROOT, SHARED_DATA, way_main
from llmkit.commands.finetune import run_finetune
from llmkit.recipe import load_recipe
from llmkit.tasks.glue.data import TASKS, read_local_split

SHARED_SST2 = SHARED_DATA / "glue" / "SST-2"
FIXTURE_SST2 = ROOT / "tests" / "fixtures" / "glue" / "SST-2"
HYPER = {"lr": 1e-3, "epochs": 2, "batch_size": 32}


def data_files() -> tuple[Path, Path]:
    if (SHARED_SST2 / "dev.tsv").is_file():
        return SHARED_SST2 / "alps_resplit_of_glue_train" / "train.tsv", SHARED_SST2 / "dev.tsv"
    return FIXTURE_SST2 / "train.tsv", FIXTURE_SST2 / "dev.tsv"


def plain_hf_way(
    model_dir: str, train_file: Path, dev_file: Path, examples: int, out: str
) -> float:
    task = TASKS["sst2"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = read_local_split(task, train_file, needs_labels=True).select(range(examples))
    dev = read_local_split(task, dev_file, needs_labels=True)

    def preprocess(batch):
        return tokenizer(batch["sentence"], padding="max_length", max_length=128, truncation=True)

    train = train.map(preprocess, batched=True, remove_columns=["sentence", "idx"])
    dev = dev.map(preprocess, batched=True, remove_columns=["sentence", "idx"])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    args = TrainingArguments(
        out,
        learning_rate=HYPER["lr"],
        num_train_epochs=HYPER["epochs"],
        per_device_train_batch_size=HYPER["batch_size"],
        per_device_eval_batch_size=HYPER["batch_size"],
        warmup_steps=0.06,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        seed=42,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )

    def accuracy(prediction):
        return {
            "accuracy": float(
                (np.argmax(prediction.predictions, -1) == prediction.label_ids).mean()
            )
        }

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=default_data_collator,
        compute_metrics=accuracy,
    )
    trainer.train()
    return trainer.evaluate()["eval_accuracy"]


def llmkit_way(model_dir: str, train_file: Path, dev_file: Path, examples: int, out: str) -> float:
    recipe = load_recipe(
        "glue-sst2",
        [
            f"model.path={model_dir}",
            f"task.train_file={train_file}",
            f"task.validation_file={dev_file}",
            f"task.max_train_examples={examples}",
            f"train.lr={HYPER['lr']}",
            f"train.epochs={HYPER['epochs']}",
            f"train.batch_size={HYPER['batch_size']}",
        ],
    )
    return run_finetune(recipe, output_dir=Path(out), overwrite=True)["eval_accuracy"]


def timed(way):
    def run(options: dict) -> dict:
        import tempfile

        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            accuracy = way(
                options["model"],
                Path(options["train_file"]),
                Path(options["dev_file"]),
                options["examples"],
                out,
            )
        return {"value": time.perf_counter() - started, "accuracy": accuracy}

    return run


WAYS = {"llmkit": timed(llmkit_way), "plain HF": timed(plain_hf_way)}

if __name__ == "__main__":
    way_main(WAYS)

"""GLUE SST-2 fine-tuning: llmkit against the plain Hugging Face way, same model and data.

The plain way is HF's run_glue.py with its defaults: every example padded to 128 tokens
(pad_to_max_length), the default collator, random batches, and compute_metrics taking the
argmax of all evaluation logits. llmkit pads each batch to its longest example, groups
examples by length and keeps only predicted labels. Same pretrained model, data, learning
rate, epochs and batch size; runs alternate; the median wall time (tokenize + train +
evaluate) and the dev accuracy of each are printed.

    python benchmarks/finetune_glue.py [--model runs/demo/bert-tiny] [--train-examples 8000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from llmkit.cli import quiet_libraries  # noqa: E402
from llmkit.commands.finetune import run_finetune  # noqa: E402
from llmkit.commands.pretrain import run_pretrain  # noqa: E402
from llmkit.recipe import load_recipe  # noqa: E402
from llmkit.tasks.glue import TASKS, read_local_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pretrained BERT-style run (default: pretrain bert-tiny)")
    parser.add_argument("--train-examples", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    quiet_libraries()
    train_file, dev_file = data_files()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = f"{tmp}/bert-tiny"
            run_pretrain(
                load_recipe("bert-tiny", ["train.max_steps=300"]), "mlm", output_dir=Path(model_dir)
            )
        examples = min(
            args.train_examples, len(read_local_split(TASKS["sst2"], train_file, needs_labels=True))
        )
        ways = {
            "llmkit (dynamic padding, length groups)": llmkit_way,
            "plain HF (run_glue: pad to 128)": plain_hf_way,
        }
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        accuracy: dict[str, float] = {}
        for repeat in range(args.repeats):
            for name, way in ways.items():
                started = time.perf_counter()
                accuracy[name] = way(
                    model_dir, train_file, dev_file, examples, f"{tmp}/run-{repeat}"
                )
                seconds[name].append(time.perf_counter() - started)
    print(f"\nSST-2: {examples:,} training examples, dev {dev_file}")
    print(f"{HYPER}; {os.cpu_count()} CPU cores; median of {args.repeats} alternating runs")
    print(f"{'method':42} {'wall s (median)':>16} {'min':>7} {'max':>7} {'dev acc':>8}")
    for name in ways:
        s, acc = seconds[name], accuracy[name]
        print(f"{name:42} {statistics.median(s):16.2f} {min(s):7.2f} {max(s):7.2f} {acc:8.3f}")
    llmkit, plain = (statistics.median(seconds[name]) for name in ways)
    print(f"\nllmkit wall time / plain: {llmkit / plain:.2f}x")


if __name__ == "__main__":
    main()

"""Pretraining throughput: `llmkit pretrain-clm/-mlm` against HF's run_clm.py / run_mlm.py.

Both train the same model (the config llmkit builds from the tiny recipe, saved once and
loaded by the plain way), from the same initial weights (seed 42), on the same text with the
same tokenizer, batch, learning rate, schedule and number of steps. The plain way is what
run_clm/run_mlm do: `datasets.map` tokenization, `group_texts` into seq_len blocks, default
TrainingArguments otherwise, `default_data_collator` (CLM) or
`DataCollatorForLanguageModeling(mlm_probability=0.15)` (MLM). The metric is training tokens
per second as Trainer times it (`train_runtime`); quality: the mean training loss of both runs
agrees to within 0.15 nats (same model, same steps; data order and masks differ).
"""

from __future__ import annotations

import os
import tempfile
from itertools import chain
from pathlib import Path

from benchmarks.harness import way_main

RECIPES = {"clm": "gpt2-tiny", "mlm": "bert-tiny"}


def recipe_overrides(options: dict) -> list[str]:
    return [
        f"data.train={options['corpus']}",
        f"tokenizer.path={options['tokenizer']}",
        f"train.max_steps={options['steps']}",
        "data.validation_fraction=0",
        "train.eval_every=null",
        f"train.log_every={options['steps']}",
    ]


def llmkit_way(options: dict) -> dict:
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.recipe import load_recipe

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMKIT_CACHE"] = f"{tmp}/cache"  # every run encodes its corpus afresh
        objective = options["objective"]
        recipe = load_recipe(RECIPES[objective], recipe_overrides(options))
        summary = run_pretrain(recipe, objective, output_dir=Path(tmp) / "run")
    return {
        "value": summary["tokens_per_second"],
        "train_loss": summary["train_loss"],
        "chunked_loss": summary["chunked_loss"],
    }


def plain_way(options: dict) -> dict:
    import datasets
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from llmkit.recipe import load_recipe

    objective = options["objective"]
    recipe = load_recipe(RECIPES[objective])
    seq_len, mlm = recipe.data.seq_len, objective == "mlm"
    set_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(options["tokenizer"])
    config = AutoConfig.from_pretrained(options["config"])
    model = (AutoModelForMaskedLM if mlm else AutoModelForCausalLM).from_config(config)
    raw = datasets.load_dataset("text", data_files=options["corpus"], split="train")

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=mlm)

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"])

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = (len(concatenated["input_ids"]) // seq_len) * seq_len
        result = {
            k: [t[i : i + seq_len] for i in range(0, total_length, seq_len)]
            for k, t in concatenated.items()
        }
        if not mlm:
            result["labels"] = result["input_ids"].copy()
        return result

    blocks = tokenized.map(group_texts, batched=True)
    collator = (
        DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        if mlm
        else default_data_collator
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=recipe.train.batch_size,
            learning_rate=recipe.train.lr,
            lr_scheduler_type=recipe.train.schedule,
            warmup_steps=recipe.train.warmup,
            weight_decay=recipe.train.weight_decay,
            max_steps=options["steps"],
            seed=42,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=collator)
        result = trainer.train()
    tokens = options["steps"] * recipe.train.batch_size * seq_len
    return {"value": tokens / result.metrics["train_runtime"], "train_loss": result.training_loss}


WAYS = {"llmkit": llmkit_way, "plain HF": plain_way}

if __name__ == "__main__":
    way_main(WAYS)

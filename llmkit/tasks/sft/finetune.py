"""SFT: a causal LM trained by TRL's SFTTrainer on the encoded examples (data.py), with
packing when asked; evaluated by its loss on the validation answers and, for chat and
completion data, by answering validation prompts greedily (exact match)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, Trainer
from trl import SFTConfig, SFTTrainer

from llmkit.adapters import quantization_options
from llmkit.checkpoints import require_model_dir
from llmkit.console import note
from llmkit.errors import UserError
from llmkit.generation import generate_batch
from llmkit.models import language_modeling_of, load_with_head, model_positions
from llmkit.recipe import Recipe
from llmkit.rundir import write_atomic
from llmkit.tasks.prepared import PreparedTask, checkpoint_path
from llmkit.tasks.sft.data import (
    Format,
    encode_split,
    marked,
    prepare_format,
    split_source,
    supervised_share,
)
from llmkit.tasks.splits import load_splits
from llmkit.tokenizer import load_tokenizer
from llmkit.training import without_timings

EMBEDDING_MULTIPLE = 64  # new rows for added tokens: a multiple that GPUs like


def load_causal_lm(recipe: Recipe):
    """model.path as a causal LM and its tokenizer with the run's format applied."""
    path = checkpoint_path(recipe)
    folder = require_model_dir(path, "model.path")
    trust = recipe.model.trust_remote_code
    modeling = language_modeling_of(AutoConfig.from_pretrained(folder, trust_remote_code=trust))
    if modeling != "clm":
        raise UserError(
            f"{recipe.task.name} fine-tunes causal LMs (gpt2, llama); {path} is a "
            f"{'masked LM' if modeling == 'mlm' else 'encoder-decoder'}",
            "give model.path a pretrain-clm run or another causal LM checkpoint",
        )
    tokenizer = load_tokenizer(recipe.tokenizer.path or path, trust_remote_code=trust)
    fmt = prepare_format(recipe.task, tokenizer)
    quantized = quantization_options(recipe.model.lora)
    model = load_with_head(
        path, AutoModelForCausalLM, trust_remote_code=trust, load_options=quantized
    )
    rows = model.get_input_embeddings().num_embeddings
    if fmt.added_tokens:
        note(f"added special tokens {', '.join(fmt.added_tokens)} to the tokenizer")
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=EMBEDDING_MULTIPLE)
        note(f"resized the embeddings from {rows:,} to {model.config.vocab_size:,} rows")
    end_id = tokenizer.convert_tokens_to_ids(fmt.end_of_turn)
    # What `generate` does after fine-tuning (and `llmkit generate` later): stop at the end
    # of the answer. Saved with the model in generation_config.json.
    model.generation_config.eos_token_id = end_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, fmt


def answer_prompts(rows, fmt: Format, tokenizer) -> tuple[list[str], list[str]]:
    """(prompt, reference answer) of each validation row: a chat up to its last assistant
    turn with the generation prompt, or a completion row's prompt."""
    prompts, references = [], []
    for row in rows:
        if fmt.layout == "chat":
            turns = row["messages"]
            last = max(i for i, turn in enumerate(turns) if turn["role"] == "assistant")
            prompt = tokenizer.apply_chat_template(
                turns[:last], tokenize=False, add_generation_prompt=True
            )
            prompts.append(prompt)
            references.append(turns[last]["content"])
        else:
            prompts.append(row["prompt"])
            references.append(row["completion"].removesuffix(fmt.end_of_turn))
    return prompts, references


def generated_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch=16):
    """Greedy answers, stopping at the end of turn; prompts too long for the model's positions
    with max_new_tokens more are left out (None)."""
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=False, max_new_tokens=max_new_tokens, num_beams=1)
    config.temperature = config.top_p = config.top_k = None
    room = model_positions(model.config) - max_new_tokens
    answers: list[str | None] = [None] * len(prompts)
    fits = [i for i, p in enumerate(prompts) if len(tokenizer(p)["input_ids"]) <= room]
    for start in range(0, len(fits), batch):
        chunk = fits[start : start + batch]
        done = generate_batch(model, tokenizer, [prompts[i] for i in chunk], config, [])
        for index, completion in zip(chunk, done, strict=True):
            answers[index] = completion.completion.strip()
    return answers


def main_metric(recipe: Recipe) -> str:
    """Exact match of generated answers, where there are answers to generate; else the loss."""
    answers = not recipe.task.name.endswith("/text") and recipe.task.generate_examples > 0
    return "eval_exact_match" if answers else "eval_loss"


def prepare(recipe: Recipe, *, eval_only: bool) -> PreparedTask:
    keys = recipe.task
    model, tokenizer, fmt = load_causal_lm(recipe)
    positions = model_positions(model.config)
    max_length = min(keys.max_length or positions, positions)
    splits = load_splits(split_source(keys), eval_only=eval_only)
    source = keys.train_file or keys.dataset or "train"
    train = (
        encode_split(splits.train, fmt, tokenizer, max_length, str(source))
        if splits.train is not None
        else None
    )
    dev = encode_split(splits.dev, fmt, tokenizer, max_length, str(keys.validation_file or "dev"))
    rows = splits.dev.select(range(min(keys.generate_examples, len(splits.dev))))
    answered = main_metric(recipe) == "eval_exact_match"

    def evaluate(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
        metrics = {
            k: v for k, v in without_timings(trainer.evaluate()).items() if k.startswith("eval_")
        }
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 100))
        trained, total = supervised_share(dev)
        metrics.update(eval_examples=len(dev), eval_trained_tokens=trained, eval_tokens=total)
        if not answered:
            return metrics
        prompts, references = answer_prompts(rows, fmt, tokenizer)
        model = trainer.accelerator.unwrap_model(trainer.model)
        answers = generated_answers(model, tokenizer, prompts, keys.max_new_tokens)
        scored = [(a, r) for a, r in zip(answers, references, strict=True) if a is not None]
        metrics["eval_exact_match"] = (
            100 * sum(a == r.strip() for a, r in scored) / len(scored) if scored else 0.0
        )
        metrics["eval_answered"] = len(scored)
        if trainer.is_world_process_zero():
            lines = [
                json.dumps({"prompt": p, "reference": r, "prediction": a}, ensure_ascii=False)
                for p, r, a in zip(prompts, references, answers, strict=True)
            ]
            write_atomic(run_dir / "dev_predictions.jsonl", "\n".join(lines) + "\n")
        return metrics

    return PreparedTask(
        name=keys.name,
        model=model,
        tokenizer=tokenizer,
        train=train,
        evaluation=dev,
        collator=None,  # TRL's: padding, and position ids that restart per packed example
        evaluate=evaluate,
        description=f"{keys.name} supervised fine-tuning (answers only trained)",
        group_by_length=False,
        trainer_class=SFTTrainer,
        arguments_class=SFTConfig,
        arguments={
            "max_length": max_length,
            "packing": keys.packing,
            "packing_strategy": "bfd",  # whole examples; position ids restart at each
            "eval_packing": False,  # the validation loss is per example, packed or not
            "gradient_checkpointing": recipe.train.gradient_checkpointing,
            "completion_only_loss": None,  # the labels already say what is trained
            "dataset_kwargs": {},
        },
        trainer_has_fused_loss=True,
        added_token_ids=tokenizer.convert_tokens_to_ids(list(fmt.added_tokens)),
        train_examples=len(train) if train is not None else None,
    )


def audit(recipe: Recipe) -> dict[str, Any]:
    """What a dry run shows: one training example with its trained tokens marked, and the
    trained share of the training data (the model itself is not loaded)."""
    keys = recipe.task
    folder = require_model_dir(checkpoint_path(recipe), "model.path")
    tokenizer = load_tokenizer(recipe.tokenizer.path or folder)
    fmt = prepare_format(keys, tokenizer)
    positions = model_positions(AutoConfig.from_pretrained(folder))
    max_length = min(keys.max_length or positions, positions)
    splits = load_splits(split_source(keys), eval_only=False)
    encoded = encode_split(splits.train, fmt, tokenizer, max_length, str(keys.train_file))
    trained, total = supervised_share(encoded)
    first = encoded[0]
    shown = marked(tokenizer, first["input_ids"], first["labels"])
    note(f"example 1, trained tokens between ⟦ ⟧:\n{shown}")
    return {
        "train_examples": len(encoded),
        "trained_tokens": trained,
        "tokens": total,
        "trained_share": round(trained / total, 4) if total else 0.0,
        "end_of_turn": fmt.end_of_turn,
        "added_tokens": ", ".join(fmt.added_tokens) or "none",
    }

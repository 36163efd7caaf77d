"""`llmkit pretrain-clm` and `llmkit pretrain-mlm`: one pipeline, two objectives.

recipe → tokenizer (given, from model.path, or trained) → packed blocks (cached) → model
(built from the recipe, or model.path) → Trainer → run directory. The objectives differ only
in the model head, the collator and whether labels are shifted (causal LM).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
    TrainerCallback,
    TrainerState,
    set_seed,
)

from llmkit.checkpoints import require_model_dir
from llmkit.data.collators import build_collator, mask_once
from llmkit.data.corpus import TextSample, packed_blocks, tokenizer_sample
from llmkit.errors import UserError
from llmkit.fast_path import prepare_for_training
from llmkit.metrics import language_model_metrics, summarize_predictions
from llmkit.models import (
    FAMILY_OBJECTIVE,
    Objective,
    build_model,
    build_model_config,
    check_model_fits,
    flops_per_token,
    load_model,
    parameter_count,
    special_token_ids,
)
from llmkit.recipe import Recipe
from llmkit.rundir import Card, Run
from llmkit.search.trial import trial_callbacks
from llmkit.tokenizer import load_tokenizer, train_tokenizer_on, vocabulary_shortfall
from llmkit.training import (
    build_trainer,
    main_processes_first,
    settings_used,
    train_guarded,
    training_arguments,
    without_timings,
)

OBJECTIVE_NAMES = {"clm": "causal language model", "mlm": "masked language model"}


def _check_objective(recipe: Recipe, objective: Objective) -> bool:
    """Validate family against objective; returns whether NSP is on."""
    if recipe.model.lora is not None:
        raise UserError(
            "model.lora is for finetune: pretraining trains every weight",
            "drop model.lora, or fine-tune the pretrained model with it",
        )
    family = recipe.model.family
    if recipe.model.path is None:
        if family is None:
            raise UserError(
                "the recipe sets neither model.family nor model.path",
                "set model.family (gpt2 or llama for pretrain-clm, bert or roberta for "
                "pretrain-mlm), or model.path to continue from a checkpoint",
            )
        if family not in FAMILY_OBJECTIVE:
            raise UserError(
                f"model.family {family} is an encoder-decoder, which llmkit fine-tunes but does "
                "not pretrain",
                "use it with `llmkit finetune --recipe seq2seq-summarization` (or "
                "seq2seq-translation)",
            )
        if FAMILY_OBJECTIVE[family] != objective:
            other = "pretrain-mlm" if objective == "clm" else "pretrain-clm"
            raise UserError(
                f"model.family {family} is not a {OBJECTIVE_NAMES[objective]}",
                f"use `llmkit {other}`, or a "
                f"{' or '.join(f for f, o in FAMILY_OBJECTIVE.items() if o == objective)} family",
            )
    nsp = objective == "mlm" and recipe.objective.nsp
    if nsp and family not in (None, "bert"):
        raise UserError("objective.nsp needs the bert family (BertForPreTraining)")
    return nsp


def trains_tokenizer(recipe: Recipe) -> bool:
    """A new tokenizer is trained on the corpus when the run starts (none given or loaded)."""
    return not recipe.tokenizer.path and not recipe.model.path


def _tokenizer(recipe: Recipe, corpus: TextSample | None) -> PreTrainedTokenizerFast:
    trust = recipe.model.trust_remote_code
    if recipe.tokenizer.path:
        return load_tokenizer(recipe.tokenizer.path, trust_remote_code=trust)
    if recipe.model.path:
        return load_tokenizer(recipe.model.path, trust_remote_code=trust)
    assert corpus is not None
    return train_tokenizer_on(corpus.sample, recipe.tokenizer, family=recipe.model.family)


def _check_tokenizer(tokenizer: PreTrainedTokenizerFast, objective: Objective) -> None:
    if objective == "mlm" and tokenizer.mask_token is None:
        raise UserError(
            "the tokenizer has no mask token, which masked-LM pretraining needs",
            "use a tokenizer trained with tokenizer.style bert or roberta",
        )


def hold_out(blocks: datasets.Dataset, fraction: float):
    """The last `fraction` of the blocks as validation: contiguous, so no document straddles."""
    if fraction == 0:
        return blocks, None
    held = max(1, round(len(blocks) * fraction))
    if held >= len(blocks):
        raise UserError(
            f"the corpus packs into {len(blocks)} block(s): too few to hold out validation",
            "use more text, a smaller data.seq_len, data.validation, or data.validation_fraction 0",
        )
    return blocks.select(range(len(blocks) - held)), blocks.select(
        range(len(blocks) - held, len(blocks))
    )


def describe_model(recipe: Recipe, objective: Objective) -> dict[str, Any]:
    """Size and cost of the recipe's model, for --dry-run (no tokenizer is trained)."""
    nsp = _check_objective(recipe, objective)
    if recipe.model.path:
        model = load_model(recipe.model.path, objective, nsp)
        config = model.config
        parameters = sum(p.numel() for p in model.parameters())
    else:
        source = recipe.tokenizer.path
        tokens = len(load_tokenizer(source)) if source else recipe.tokenizer.vocab_size
        config = build_model_config(
            recipe.model, tokens=tokens, seq_len=recipe.data.seq_len, special_ids={}
        )
        check_model_fits(config, tokens, recipe.data.seq_len)
        parameters = parameter_count(config, objective, nsp)
    # A tokenizer trained when the run starts may learn fewer entries than asked (a small
    # corpus): the sizes shown are then the most the run can have.
    most = "up to " if trains_tokenizer(recipe) else ""
    return {
        "model": config.model_type + (" + NSP" if nsp else ""),
        "parameters": f"{most}{parameters:,}",
        "vocab_size": f"{most}{config.vocab_size:,}",
        "seq_len": recipe.data.seq_len,
        "flops_per_token": f"{most}{flops_per_token(config, parameters, recipe.data.seq_len):,}",
    }


@dataclass
class PretrainingData:
    train: datasets.Dataset
    evaluation: datasets.Dataset | None
    reused: bool  # the training blocks came from the cache
    # whole-word masking's words: "jieba" (a segmenter's), "vocabulary" (gaps and ## pieces)
    words: str | None = None


def prepare_data(
    recipe: Recipe,
    objective: Objective,
    layout: str,
    tokenizer: PreTrainedTokenizerFast,
    corpus: TextSample | None,
) -> PretrainingData:
    data, seed = recipe.data, recipe.seed
    masking = recipe.objective
    segmenter = masking.segmenter if objective == "mlm" and masking.whole_word_mask else None
    train = packed_blocks(
        data,
        data.train,
        tokenizer,
        layout,
        split="train",
        reuse=corpus,
        seed=seed,
        segmenter=segmenter,
    )
    if data.validation:
        validation = packed_blocks(
            data,
            data.validation,
            tokenizer,
            layout,
            split="validation",
            seed=seed,
            segmenter=segmenter,
        )
        train_set, evaluation = train.blocks, validation.blocks
    else:
        train_set, evaluation = hold_out(train.blocks, data.validation_fraction)
    if objective == "mlm" and evaluation is not None:
        evaluation = mask_once(
            evaluation, tokenizer, recipe.objective, seq_len=data.seq_len, seed=seed
        )
    words = (train.stats.word_segmenter or "vocabulary") if segmenter else None
    return PretrainingData(train_set, evaluation, train.reused, words)


def prepare_model(recipe: Recipe, objective: Objective, nsp: bool, tokenizer) -> PreTrainedModel:
    """Built from the recipe (seeded: the same recipe starts from the same weights) or loaded."""
    set_seed(recipe.seed)
    if recipe.model.path:
        model = load_model(
            recipe.model.path, objective, nsp, trust_remote_code=recipe.model.trust_remote_code
        )
    else:
        config = build_model_config(
            recipe.model,
            tokens=len(tokenizer),
            seq_len=recipe.data.seq_len,
            special_ids=special_token_ids(tokenizer),
        )
        model = build_model(config, objective, nsp)
    check_model_fits(model.config, len(tokenizer), recipe.data.seq_len)
    return model


CARD_RESULTS = (
    "parameters",
    "steps",
    "train_loss",
    "eval_loss",
    "eval_perplexity",
    "eval_accuracy",
    "eval_nsp_accuracy",
    "tokens_per_second",
)


def pretraining_card(run: Run, objective: Objective, metrics: dict[str, Any]) -> Card:
    recipe = run.recipe
    data, train = recipe.data, recipe.train
    start = (
        f"continued from `{recipe.model.path}`" if recipe.model.path else "pretrained from scratch"
    )
    head = "CausalLM" if objective == "clm" else "MaskedLM"
    model = f"{metrics['model']} {OBJECTIVE_NAMES[objective]}"
    return Card(
        title=f"{recipe.name}: {model}",
        what=f"A {metrics['parameters']:,}-parameter {model}, "
        f"{start} with llmkit on `{data.train}`: {metrics['steps']} steps of "
        f"{train.batch_size}×{train.grad_accum} blocks of {data.seq_len} tokens. "
        f'Load it with `AutoModelFor{head}.from_pretrained("{run.dir}")`.',
        results={key: metrics[key] for key in CARD_RESULTS if key in metrics},
    )


def run_pretrain(
    recipe: Recipe,
    objective: Objective,
    *,
    output_dir: Path | None = None,
    overwrite: bool = False,
    resume: str | None = None,
    callbacks: list[TrainerCallback] | tuple = (),
) -> dict[str, Any]:
    """Pretrain the recipe's model with `objective`; returns the run's summary."""
    run = Run.start(
        recipe, f"pretrain-{objective}", output_dir=output_dir, overwrite=overwrite, resume=resume
    )
    nsp = _check_objective(recipe, objective)
    if recipe.model.path:
        require_model_dir(recipe.model.path, "model.path")

    # The corpus is sampled here only when a tokenizer must be trained on it; packed_blocks
    # reads it (again, unless the sample held all of it) only when its blocks are not cached
    # yet. Under torchrun/accelerate the main process prepares the data first and the others
    # then map the same cached shards, so a large corpus is encoded once.
    with main_processes_first():
        corpus = (
            tokenizer_sample(recipe.data, recipe.tokenizer.train_bytes, seed=recipe.seed)
            if trains_tokenizer(recipe)
            else None
        )
        tokenizer = _tokenizer(recipe, corpus)
        _check_tokenizer(tokenizer, objective)
        data = prepare_data(recipe, objective, "nsp" if nsp else objective, tokenizer, corpus)
    model = prepare_model(recipe, objective, nsp, tokenizer)
    model_changes = prepare_for_training(model, recipe.train)

    args = training_arguments(
        recipe.train,
        run.dir,
        seed=recipe.seed,
        evaluate=data.evaluation is not None,
        # blocks hold only what the collator reads, which includes a segmenter's words
        remove_unused_columns=False,
    )
    trainer = build_trainer(
        model,
        args,
        train_dataset=data.train,
        eval_dataset=data.evaluation,
        collator=build_collator(objective, tokenizer, recipe.objective, seed=recipe.seed),
        tokenizer=tokenizer,
        compute_metrics=language_model_metrics,
        preprocess_logits_for_metrics=functools.partial(
            summarize_predictions, shift=objective == "clm"
        ),
        train=recipe.train,
        callbacks=[*trial_callbacks(), *callbacks],
    )

    run.claim(main_process=trainer.is_world_process_zero())
    resume_from = run.resume_from
    tokens_before = (
        TrainerState.load_from_json(str(resume_from / "trainer_state.json")).num_input_tokens_seen
        if resume_from
        else 0
    )
    result = train_guarded(trainer, resume_from)
    final_eval = trainer.evaluate() if data.evaluation is not None else {}

    state = trainer.state
    runtime = result.metrics.get("train_runtime", 0.0)
    parameters = sum(p.numel() for p in model.parameters())
    evaluations = [entry for entry in state.log_history if "eval_loss" in entry]
    metrics = run.summary(
        model=model.config.model_type + (" + NSP" if nsp else ""),
        parameters=parameters,
        vocab_size=model.config.vocab_size,
        **(vocabulary_shortfall(tokenizer, recipe.tokenizer) if trains_tokenizer(recipe) else {}),
        seq_len=recipe.data.seq_len,
        train_blocks=len(data.train),
        eval_blocks=len(data.evaluation) if data.evaluation is not None else 0,
        blocks_reused=data.reused,
        **({"whole_words_from": data.words} if data.words else {}),
        steps=state.global_step,
        train_loss=result.training_loss,
        train_tokens=state.num_input_tokens_seen,
        tokens_per_second=(state.num_input_tokens_seen - tokens_before) / runtime
        if runtime
        else 0.0,
        train_runtime_s=runtime,
        flops_per_token=flops_per_token(model.config, parameters, recipe.data.seq_len),
        **settings_used(trainer.args),
        **model_changes,
    )
    if evaluations:
        metrics["initial_eval_loss"] = evaluations[0]["eval_loss"]
    metrics.update({k: v for k, v in without_timings(final_eval).items() if k.startswith("eval_")})
    if resume_from:
        metrics["resumed_from"] = str(resume_from)

    # Trainer turns the KV cache off for training (TrainingArguments.use_cache); the saved
    # model is for generation and evaluation, where the cache makes decoding fast.
    model.config.use_cache = True
    card = pretraining_card(run, objective, metrics)
    return run.finish(metrics, card, trainer=trainer, tokenizer=tokenizer)

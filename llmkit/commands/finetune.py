"""`llmkit finetune`: fine-tune a checkpoint on a downstream task and evaluate it.

The steps every task shares live here: the run directory, the Trainer, training with
checkpoints, saving, the model card. What differs per task (head, encoding, metrics,
prediction files) comes from the task's kind (`llmkit/tasks/<kind>/`) as a `PreparedTask`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import transformers
from transformers import Trainer, TrainerCallback, set_seed

from llmkit.adapters import add_lora, check_quantization, parameter_counts
from llmkit.errors import UserError
from llmkit.fast_path import prepare_for_training
from llmkit.models import load_with_head
from llmkit.recipe import Recipe
from llmkit.rundir import Card, Run
from llmkit.search.trial import trial_callbacks
from llmkit.tasks import check_task_name
from llmkit.tasks.finetuning import finetuning_of
from llmkit.tasks.kind import TaskKind
from llmkit.tasks.prepared import PreparedTask, checkpoint_path
from llmkit.training import build_trainer, settings_used, train_guarded, training_arguments


def describe_task(recipe: Recipe) -> dict[str, str]:
    """What a finetune dry run checks and shows: the task is known, its kind and head, what
    the kind audits in its data (sft), and with model.lora the trainable parameters."""
    kind = check_task_name(recipe.task.name)
    shown = {"task": recipe.task.name, "kind": f"{kind.name}/*", "head": kind.head}
    if recipe.model.lora is not None:
        shown.update(lora_parameters(recipe, kind))
    audit = getattr(finetuning_of(kind), "audit", None)
    return {**shown, **(audit(recipe) if audit else {})}


def lora_parameters(recipe: Recipe, kind: TaskKind) -> dict[str, int]:
    """Trainable and total parameters of model.path with the head and LoRA adapters."""
    check_quantization(recipe.model.lora)
    model = load_with_head(checkpoint_path(recipe), getattr(transformers, kind.head))
    return parameter_counts(add_lora(model, recipe.model.lora, kind.head))


def task_trainer(
    recipe: Recipe, task: PreparedTask, run_dir: Path, *, callbacks: list | tuple = ()
) -> Trainer:
    """The Trainer that fine-tunes a prepared task: the recipe's training arguments with the
    task's own (its arguments class, length grouping), its data, collator and metrics."""
    args = training_arguments(
        recipe.train,
        run_dir,
        seed=recipe.seed,
        evaluate=True,
        evaluate_first=False,
        group_by_length=task.group_by_length,
        arguments_class=task.arguments_class,
        **task.arguments,
    )
    return build_trainer(
        task.model,
        args,
        train_dataset=task.train,
        eval_dataset=task.evaluation,
        collator=task.collator,
        tokenizer=task.tokenizer,
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.preprocess_logits_for_metrics,
        trainer_class=task.trainer_class,
        train=recipe.train,
        callbacks=callbacks,
    )


def run_finetune(
    recipe: Recipe,
    *,
    output_dir: Path | None = None,
    overwrite: bool = False,
    resume: str | None = None,
    eval_only: bool = False,
    callbacks: list[TrainerCallback] | tuple = (),
) -> dict[str, Any]:
    kind = check_task_name(recipe.task.name)
    if not recipe.model.path and not recipe.model.family:
        raise UserError(
            "finetune needs model.path: an llmkit run directory or a local checkpoint",
            "e.g. --set model.path=runs/bert-tiny",
        )
    if recipe.model.lora is not None:
        check_quantization(recipe.model.lora)
    run = Run.start(recipe, "finetune", output_dir=output_dir, overwrite=overwrite, resume=resume)

    # A new head (or a new seq2seq model) is initialised when the task is prepared: from the
    # recipe's seed, not from whatever the process's random state happens to be.
    set_seed(recipe.seed)
    finetuning = finetuning_of(kind)
    task = finetuning.prepare(recipe, eval_only=eval_only)
    main_metric = finetuning.main_metric(recipe)
    if not task.trainer_has_fused_loss:
        prepare_for_training(task.model, recipe.train)
    lora = recipe.model.lora
    if lora is not None:
        if eval_only:
            raise UserError(
                "model.lora trains adapters; --eval-only trains nothing",
                "drop model.lora (a LoRA run directory as model.path is evaluated merged)",
            )
        task.model = add_lora(task.model, lora, kind.head, new_token_ids=task.added_token_ids)
        # The adapter names its base by this path; absolute, so that it loads from anywhere.
        task.model.peft_config["default"].base_model_name_or_path = str(
            Path(recipe.model.path).resolve()
        )
    trainer = task_trainer(recipe, task, run.dir, callbacks=[*trial_callbacks(), *callbacks])
    run.claim(main_process=trainer.is_world_process_zero())

    metrics = run.summary(task=task.name, main_metric=main_metric, **settings_used(trainer.args))
    if lora is not None:
        metrics.update(lora_r=lora.r, base_model=recipe.model.path, **parameter_counts(task.model))
    if task.train is not None:
        result = train_guarded(trainer, run.resume_from)
        metrics.update(
            train_examples=task.train_examples or len(task.train),
            steps=trainer.state.global_step,
            train_loss=result.training_loss,
            train_runtime_s=result.metrics.get("train_runtime", 0.0),
        )
        if run.resume_from:
            metrics["resumed_from"] = str(run.resume_from)

    # Length grouping speeds training, but transformers applies it to evaluation too, and
    # then `predict` returns predictions in that shuffled order. Predictions written per
    # example must follow the dataset's order.
    trainer.args.train_sampling_strategy = "sequential"
    metrics.update(task.evaluate(trainer, run.dir))

    verb = "evaluated" if eval_only else "fine-tuned"
    source = recipe.model.path or f"a new {recipe.model.family} model"
    loads_with = (
        f'`PeftModel.from_pretrained({kind.head}.from_pretrained("{source}"), "{run.dir}")` '
        f"(a LoRA adapter of rank {lora.r} on `{source}`), or merged into a plain checkpoint "
        f"with `llmkit export --model {run.dir} -o DIR`"
        if lora is not None
        else f'`{kind.head}.from_pretrained("{run.dir}")`'
    )
    card = Card(
        title=f"{recipe.name}: {task.name}",
        what=f"`{source}` {verb} on {task.description} with llmkit. Load it with {loads_with}.",
        results={k: v for k, v in metrics.items() if k.startswith("eval_") or k == main_metric},
    )
    trained = task.train is not None
    if lora is not None and trainer.is_world_process_zero():
        # The fine-tuned model's config (its labels, its vocabulary) beside the adapter.
        fine_tuned = task.model.get_base_model()
        fine_tuned.config.architectures = [type(fine_tuned).__name__]
        fine_tuned.config.save_pretrained(run.dir)
    tokenizer = task.tokenizer if trained else None
    return run.finish(metrics, card, trainer=trainer, trained=trained, tokenizer=tokenizer)

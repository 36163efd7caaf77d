"""`llmkit finetune`: fine-tune a checkpoint on a downstream task and evaluate it.

The steps every task shares live here: the run directory, the Trainer, training with
checkpoints, saving, the model card. What differs per task (head, encoding, metrics,
prediction files) comes from `llmkit.finetuning` as a `PreparedTask`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import Seq2SeqTrainingArguments, TrainerCallback, set_seed

from llmkit.errors import UserError
from llmkit.fast_path import prepare_for_training
from llmkit.finetuning import prepare_task
from llmkit.recipe import Recipe
from llmkit.rundir import (
    check_output_dir,
    claim_output_dir,
    resolve_resume,
    save_metrics,
    save_recipe,
    write_card,
)
from llmkit.tokenizer import save_tokenizer
from llmkit.training import build_trainer, settings_used, train_guarded, training_arguments


def run_finetune(
    recipe: Recipe,
    *,
    output_dir: Path | None = None,
    overwrite: bool = False,
    resume: str | None = None,
    eval_only: bool = False,
    callbacks: list[TrainerCallback] | tuple = (),
) -> dict[str, Any]:
    started = time.perf_counter()
    if not recipe.task.name:
        raise UserError("the recipe sets no task.name", "e.g. --set task.name=glue/sst2")
    if not recipe.model.path and not recipe.model.family:
        raise UserError(
            "finetune needs model.path: an llmkit run directory or a local checkpoint",
            "e.g. --set model.path=runs/bert-tiny",
        )
    run_dir = Path(output_dir) if output_dir else recipe.resolved_output_dir
    check_output_dir(run_dir, overwrite=overwrite, resume=resume is not None)
    resume_from = resolve_resume(run_dir, resume)

    # A new head (or a new seq2seq model) is initialised when the task is prepared: from the
    # recipe's seed, not from whatever the process's random state happens to be.
    set_seed(recipe.seed)
    task = prepare_task(recipe, eval_only=eval_only)
    prepare_for_training(task.model, recipe.train)
    args = training_arguments(
        recipe.train,
        run_dir,
        seed=recipe.seed,
        evaluate=True,
        evaluate_first=False,
        group_by_length=task.group_by_length,
        arguments_class=Seq2SeqTrainingArguments if task.generates else None,
        **task.generation,
    )
    trainer = build_trainer(
        task.model,
        args,
        train_dataset=task.train,
        eval_dataset=task.evaluation,
        collator=task.collator,
        tokenizer=task.tokenizer,
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.preprocess_logits_for_metrics,
        generates=task.generates,
        callbacks=callbacks,
    )
    if trainer.is_world_process_zero():
        claim_output_dir(run_dir, overwrite=overwrite, resume=resume is not None)
        save_recipe(run_dir, recipe)

    metrics: dict[str, Any] = {
        "command": "finetune",
        "output_dir": str(run_dir),
        "task": task.name,
        **settings_used(trainer.args),
    }
    if task.train is not None:
        result = train_guarded(trainer, resume_from)
        metrics.update(
            train_examples=task.train_examples or len(task.train),
            steps=trainer.state.global_step,
            train_loss=result.training_loss,
            train_runtime_s=result.metrics.get("train_runtime", 0.0),
        )
        if resume_from:
            metrics["resumed_from"] = str(resume_from)

    # Length grouping speeds training, but transformers applies it to evaluation too, and
    # then `predict` returns predictions in that shuffled order. Predictions written per
    # example must follow the dataset's order.
    trainer.args.train_sampling_strategy = "sequential"
    metrics.update(task.evaluate(trainer, run_dir))
    metrics["wall_seconds"] = time.perf_counter() - started

    if task.train is not None:
        trainer.save_model(str(run_dir))
    if trainer.is_world_process_zero():
        (run_dir / "training_args.bin").unlink(missing_ok=True)  # no pickles in a run directory
        if task.train is not None:
            save_tokenizer(task.tokenizer, run_dir)
            trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
        verb = "evaluated" if eval_only else "fine-tuned"
        source = recipe.model.path or f"a new {recipe.model.family} model"
        write_card(
            run_dir,
            command="finetune",
            title=f"{recipe.name}: {task.name}",
            what=f"`{source}` {verb} on {task.description} with llmkit. Load it with "
            f'`{task.loads_with}.from_pretrained("{run_dir}")`.',
            recipe=recipe,
            results={
                k: v for k, v in metrics.items() if k.startswith("eval_") or k == task.main_metric
            },
        )
        save_metrics(run_dir, metrics)
    return metrics

"""Trainer assembly: the recipe's `train` section as TrainingArguments, and a Trainer.

Every training command goes through `training_arguments` and `build_trainer`; they differ
in the model, the collator and the metric functions they pass. Progress is drawn with rich on the
main process; nothing is reported to any service unless `train.report_to` names one.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import PartialState
from rich.progress import Progress
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from llmkit.console import note, progress_bar
from llmkit.errors import Interrupted, RunFailed, UserError
from llmkit.fast_path import has_accelerator, note_sharding_fallback, resolve_fast_path
from llmkit.optimizers import check_optimizer_launch, optimizer_choice
from llmkit.recipe import TrainConfig
from llmkit.rundir import complete_checkpoints

SCHEDULES = {
    "linear": "linear",
    "cosine": "cosine",
    "constant": "constant_with_warmup",
    "wsd": "warmup_stable_decay",
}
# In `lr_scheduler_kwargs` of a wsd run: the share of the steps that decays (turned into
# transformers' step count by CheckpointSafeTrainer.create_scheduler).
DECAY_FRACTION = "decay_fraction"
# The package each `train.report_to` integration imports (either name will do).
REPORTER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "trackio": ("trackio",),
}


def check_reporters(report_to: list[str]) -> None:
    for name in report_to:
        if not any(importlib.util.find_spec(package) for package in REPORTER_PACKAGES[name]):
            raise UserError(
                f"train.report_to names {name}, which is not installed",
                f"pip install {REPORTER_PACKAGES[name][0]}",
            )


# Processes waiting for the main process to prepare the data wait on a CPU (gloo) group of
# their own with this timeout, so that hours of tokenization never trip the training
# collectives' timeout (which should stay short, to catch a hung GPU).
DATA_PREPARATION_TIMEOUT = timedelta(hours=12)


@contextmanager
def main_processes_first() -> Iterator[None]:
    """Under torchrun/accelerate: the global main process runs the block first, then each
    machine's main process, then all the others. Data preparation in this block is done once
    (once per machine when machines do not share a cache); the others find it cached."""
    state = PartialState(cpu=not has_accelerator())
    if state.num_processes == 1:
        yield
        return
    group = torch.distributed.new_group(backend="gloo", timeout=DATA_PREPARATION_TIMEOUT)

    def wait() -> None:
        torch.distributed.barrier(group=group)

    # Every process waits exactly twice, so the barriers pair up whatever its role.
    if not state.is_main_process:
        wait()  # for the main process
    if not state.is_local_main_process:
        wait()  # for this machine's main process
    yield
    if state.is_local_main_process:
        wait()
    if state.is_main_process:
        wait()


def training_arguments(
    train: TrainConfig,
    run_dir: Path,
    *,
    seed: int,
    evaluate: bool,
    evaluate_first: bool = True,
    group_by_length: bool = False,
    arguments_class: type[TrainingArguments] | None = None,
    **extra,
) -> TrainingArguments:
    """`extra`: further fields of `arguments_class` (Seq2SeqTrainingArguments' generation
    settings, pretraining's remove_unused_columns)."""
    fast = resolve_fast_path(train)
    check_reporters(train.report_to)
    check_optimizer_launch(train)
    note_sharding_fallback()
    return (arguments_class or TrainingArguments)(
        output_dir=str(run_dir),
        seed=seed,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size or train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        max_steps=train.max_steps or -1,
        num_train_epochs=train.epochs,
        learning_rate=train.lr,
        lr_scheduler_type=SCHEDULES[train.schedule],
        lr_scheduler_kwargs=(
            {"decay_type": "linear", DECAY_FRACTION: train.decay_fraction}
            if train.schedule == "wsd"
            else {}
        ),
        warmup_steps=train.warmup if train.warmup < 1 else int(train.warmup),
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        bf16=fast.precision == "bf16",
        fp16=fast.precision == "fp16",
        tf32=fast.tf32 or None,
        torch_compile=fast.compile,
        use_liger_kernel=fast.liger,
        optim="adamw_torch_fused",  # one kernel for all parameters (CPU and GPU)
        activation_checkpointing=train.gradient_checkpointing,
        logging_steps=train.log_every,
        logging_first_step=True,
        eval_strategy="steps" if evaluate and train.eval_every else "no",
        eval_steps=train.eval_every,
        eval_on_start=evaluate and evaluate_first,
        save_strategy="steps" if train.save_every else "no",
        save_steps=train.save_every,
        save_total_limit=train.keep_checkpoints,
        report_to=train.report_to or "none",
        include_num_input_tokens_seen="non_padding",
        logging_nan_inf_filter=False,  # a NaN must show, so that NonFiniteLossGuard sees it
        disable_tqdm=True,  # RichProgress draws the bar
        # Batches of examples of similar length pad less (variable-length examples only).
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        dataloader_num_workers=0,
        # Every model llmkit trains uses all its parameters; searching for unused ones under
        # DDP costs a graph traversal per step.
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Where there is nothing else, say so: transformers refuses bf16 on a CPU otherwise.
        use_cpu=not has_accelerator(),
        **extra,
    )


def without_timings(metrics: dict[str, float]) -> dict[str, float]:
    """Trainer's metrics less its timings (`*_runtime`, `*_per_second`): a run reports its own
    throughput, and results must not change from one run of the same recipe to the next."""
    return {k: v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))}


def settings_used(args: TrainingArguments) -> dict[str, object]:
    """What the run actually used once `auto` was decided, for metrics.json."""
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return {"precision": precision, "compiled": args.torch_compile, "processes": args.world_size}


STAGING_DIR = ".staging"  # inside the run directory; never mistaken for a checkpoint


def sync_tree(folder: Path) -> None:
    """Flush every file of `folder` to disk (a rename must not publish unwritten data)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def publish_checkpoint(staged: Path, final: Path) -> None:
    # Trainer pickles its arguments beside the weights; resuming never reads them, and loading
    # them would mean unpickling arbitrary objects (the optimizer, scheduler and RNG files
    # that stay are loaded with torch.load(weights_only=True)).
    (staged / "training_args.bin").unlink(missing_ok=True)
    sync_tree(staged)
    if final.exists():  # the same step saved again (e.g. after a resume): the new one wins
        shutil.rmtree(final)
    os.rename(staged, final)  # atomic: the checkpoint appears whole or not at all
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class CheckpointSafeTrainer(Trainer):
    """A Trainer whose checkpoints are complete or absent.

    Trainer writes a checkpoint's files one by one into checkpoint-<step>/, so a job killed
    meanwhile leaves a folder that looks resumable and is not. Here each checkpoint is
    written into a staging folder, flushed, renamed into place, and only then are old
    checkpoints rotated out (so a kill never leaves fewer good checkpoints than before).
    It also counts FLOPs once per run rather than per step, and gives the WSD schedule its
    decay steps.
    """

    def floating_point_ops(self, inputs) -> int:
        # Trainer's estimate for `total_flos` (6 × tokens × non-embedding parameters) counts
        # the parameters again at every step, by walking every module; once is enough.
        if not hasattr(self, "_counted_parameters"):
            count = getattr(self.model, "num_parameters", None)
            self._counted_parameters = count(exclude_embeddings=True) if count else 0
        main_input = getattr(self.model, "main_input_name", "input_ids")
        tokens = inputs[main_input].numel() if main_input in inputs else 0
        return 6 * tokens * self._counted_parameters

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        # WSD decays over the last `decay_fraction` of the steps; transformers' schedule takes
        # a step count, and the steps are known only now (a recipe may give epochs).
        settings = self.args.lr_scheduler_kwargs
        if DECAY_FRACTION not in settings:
            return super().create_scheduler(num_training_steps, optimizer)
        decay = max(1, round(settings[DECAY_FRACTION] * num_training_steps))
        warmup = self.args.get_warmup_steps(num_training_steps)
        if warmup + decay > num_training_steps:
            raise UserError(
                f"train.schedule wsd: {warmup} warmup and {decay} decay steps do not fit in "
                f"{num_training_steps} steps",
                "lower train.warmup or train.decay_fraction",
            )
        steps = {k: v for k, v in settings.items() if k != DECAY_FRACTION}
        self.args.lr_scheduler_kwargs = {**steps, "num_decay_steps": decay}
        try:
            return super().create_scheduler(num_training_steps, optimizer)
        finally:
            self.args.lr_scheduler_kwargs = settings

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(self.args.output_dir)
        self.args.output_dir = str(run_dir / STAGING_DIR)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = str(run_dir)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            publish_checkpoint(run_dir / STAGING_DIR / name, run_dir / name)
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()


def checkpoint_safe(trainer_class: type[Trainer] | None) -> type[Trainer]:
    """`trainer_class` with CheckpointSafeTrainer's checkpoints (plain Trainer: that class)."""
    if trainer_class is None or trainer_class is Trainer:
        return CheckpointSafeTrainer
    return type(
        f"CheckpointSafe{trainer_class.__name__}", (CheckpointSafeTrainer, trainer_class), {}
    )


class RichProgress(TrainerCallback):
    """A progress bar and one line per log on the main process (instead of tqdm and dicts)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.started = 0.0
        self.tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = progress_bar()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step
        )
        self.progress.start()
        self.started = time.perf_counter()
        self.tokens_at_start = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        parts = [f"step {state.global_step:>6}"]
        for key in ("loss", "eval_loss", "eval_perplexity", "eval_accuracy", "eval_nsp_accuracy"):
            if key in logs:
                parts.append(f"{key} {logs[key]:.4g}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.3g}")
        elapsed = time.perf_counter() - self.started
        if elapsed > 0 and "loss" in logs:
            rate = (state.num_input_tokens_seen - self.tokens_at_start) / elapsed
            parts.append(f"{rate:,.0f} tok/s")
        if len(parts) > 1:
            self.progress.console.print("  ".join(parts), highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def build_trainer(
    model: PreTrainedModel,
    args: TrainingArguments,
    *,
    train_dataset,
    eval_dataset,
    collator,
    tokenizer: PreTrainedTokenizerFast,
    compute_metrics,
    preprocess_logits_for_metrics,
    train: TrainConfig,
    callbacks: list[TrainerCallback] | tuple = (),
    trainer_class: type[Trainer] | None = None,
) -> Trainer:
    """A Trainer (or `trainer_class`, a subclass: Seq2SeqTrainer, TRL's SFTTrainer) with
    llmkit's checkpoints and progress display. Metrics are computed from what
    `preprocess_logits_for_metrics` keeps of each batch, so logits are never accumulated."""
    trainer = checkpoint_safe(trainer_class)(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        callbacks=[RichProgress(), *callbacks],
    )
    # Read by Trainer.create_optimizer; set here because not every Trainer subclass
    # (Seq2SeqTrainer) takes it as an argument.
    trainer.optimizer_cls_and_kwargs = optimizer_choice(train)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    processes = trainer.args.world_size
    note(
        f"global batch: {args.per_device_train_batch_size} per device × "
        f"{args.gradient_accumulation_steps} accumulation × {processes} process"
        f"{'es' if processes > 1 else ''} = "
        f"{args.per_device_train_batch_size * args.gradient_accumulation_steps * processes}"
    )
    if processes == 1 and launcher_fell_back_to_one_process():
        note(
            "[yellow]warning:[/] accelerate launch was asked for several processes but started "
            "one (without GPUs its default launcher runs a single process): this run trains "
            "alone. On CPUs, start N processes with `torchrun --nproc_per_node N -m llmkit ...` "
            "(docs/scaling.md)."
        )
    return trainer


def launcher_fell_back_to_one_process() -> bool:
    """accelerate's simple launcher, given --num_processes > 1, exports a rendezvous address
    (MASTER_ADDR) but starts one process with no WORLD_SIZE: the sign that the user's
    processes were never started."""
    env = os.environ
    launched = "ACCELERATE_MIXED_PRECISION" in env  # set by every `accelerate launch`
    return launched and "MASTER_ADDR" in env and int(env.get("WORLD_SIZE", "1")) == 1


class GracefulStop(TrainerCallback):
    """Ctrl-C or SIGTERM: finish the current step, save a checkpoint, stop. A second Ctrl-C
    stops at once (the checkpoint of the first may then be missing)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def request(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        note(
            f"\n{signal.Signals(signum).name}: finishing this step and writing a checkpoint "
            "(press Ctrl-C again to quit at once)"
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal is not None:
            control.should_save = True
            control.should_training_stop = True


class NonFiniteLossGuard(TrainerCallback):
    """Stops at the first non-finite logged loss, before a checkpoint of broken weights."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.step, self.loss = state.global_step, loss
            control.should_save = False  # the logging step's save would keep the broken weights
            control.should_training_stop = True


@contextmanager
def signals_handled_by(stop: GracefulStop) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.signal(sig, stop.request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train_guarded(trainer: Trainer, resume_from: Path | None):
    """trainer.train, stopping cleanly on a signal and loudly on a non-finite loss."""
    stop, guard = GracefulStop(), NonFiniteLossGuard()
    if trainer.is_world_process_zero():  # what a killed run left half-written
        shutil.rmtree(Path(trainer.args.output_dir) / STAGING_DIR, ignore_errors=True)
    trainer.add_callback(stop)
    trainer.add_callback(guard)
    run_dir = Path(trainer.args.output_dir)
    with signals_handled_by(stop):
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if trainer.is_world_process_zero():
        shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)
    if guard.step is not None:
        kept = complete_checkpoints(run_dir)
        raise RunFailed(
            f"the training loss became {guard.loss} by step {guard.step}; training stopped there. "
            + (f"The last good checkpoint is {kept[-1]}. " if kept else "No checkpoint was kept. ")
            + "Lower train.lr, keep train.max_grad_norm on, or train in fp32."
        )
    if stop.signal is not None:
        raise Interrupted(
            f"stopped by {signal.Signals(stop.signal).name} at step {trainer.state.global_step}; "
            f"checkpoint written in {run_dir}. Continue with --resume auto."
        )
    return result

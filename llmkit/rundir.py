"""The run directory: who may write into it, and the files every run leaves there.

A directory is an llmkit run when it holds `recipe.yaml`; it is finished when it also holds
`metrics.json`, which is always written last (atomically). Another run's directory is only
replaced with --overwrite, and only once the new run has got past every input check.

`Run` is that lifecycle, the one every command that writes a run directory follows
(tokenize, pretrain-*, finetune): `Run.start` checks the directory before any work and finds
the checkpoint to resume; `claim` takes the directory and saves the recipe once every input
is checked; `finish` saves the model, tokenizer and trainer state, the card, and
`metrics.json` last.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit import __version__
from llmkit.errors import UserError
from llmkit.recipe import Recipe

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Trainer

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
CHECKPOINT_PREFIX = "checkpoint-"
# A checkpoint counts as complete once the files Trainer writes last are there: the state,
# and the weights (a whole model's, or a LoRA run's adapter).
CHECKPOINT_STATE = "trainer_state.json"
CHECKPOINT_WEIGHTS = ("model.safetensors", "adapter_model.safetensors")


def is_complete_checkpoint(folder: Path) -> bool:
    return (folder / CHECKPOINT_STATE).is_file() and any(
        (folder / name).is_file() for name in CHECKPOINT_WEIGHTS
    )


def is_run_dir(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file()


def is_finished_run(path: Path) -> bool:
    return is_run_dir(path) and (path / METRICS_FILE).is_file()


def check_output_dir(
    path: Path, *, overwrite: bool, resume: bool = False, resumable: bool = True
) -> None:
    """Fail early, before any work, if writing to `path` would destroy something. The hint
    offers --resume only to a command that takes it (`resumable`) and a run it can continue:
    an unfinished one, or a finished one with a checkpoint."""
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other", "choose one")
    if path.exists() and not path.is_dir():
        raise UserError(f"output dir {path} is a file", "choose another --output-dir")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not is_run_dir(path):
        raise UserError(
            f"output dir {path} holds files that are not an llmkit run; refusing to write there",
            "choose another --output-dir (llmkit never deletes what it did not write)",
        )
    if not overwrite and not resume:
        finished = is_finished_run(path)
        continues = resumable and (not finished or complete_checkpoints(path))
        hint = "pass --resume auto to continue it, " if continues else "pass "
        raise UserError(
            f"output dir {path} already holds {'a finished' if finished else 'an unfinished'} run",
            f"{hint}--overwrite to replace it, or choose another --output-dir",
        )


def claim_output_dir(path: Path, *, overwrite: bool, resume: bool = False) -> Path:
    """Create the run directory, replacing an earlier run only when overwriting."""
    check_output_dir(path, overwrite=overwrite, resume=resume)
    if overwrite and is_run_dir(path):
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output dir {path}: {e.strerror}") from e
    if not os.access(path, os.W_OK):
        raise UserError(f"output dir {path} is not writable")
    return path


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints that can be resumed from, oldest first."""
    found = []
    for folder in run_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        step = folder.name.removeprefix(CHECKPOINT_PREFIX)
        if step.isdigit() and is_complete_checkpoint(folder):
            found.append((int(step), folder))
    return [folder for _, folder in sorted(found)]


def resolve_resume(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to continue from: `auto` takes the newest complete one, if any."""
    if resume is None:
        return None
    if resume == "auto":
        checkpoints = complete_checkpoints(run_dir) if run_dir.is_dir() else []
        if not checkpoints and is_finished_run(run_dir):
            # Starting afresh would silently replace a finished run. (An unfinished one with no
            # checkpoint, killed early, has nothing to lose: it starts again.)
            raise UserError(
                f"--resume auto: {run_dir} holds a finished run but no checkpoint to continue from",
                "train with train.save_every to get checkpoints; --overwrite starts afresh",
            )
        return checkpoints[-1] if checkpoints else None
    given = Path(resume)
    if is_complete_checkpoint(given):
        return given
    checkpoints = complete_checkpoints(given) if given.is_dir() else []
    if not checkpoints:
        raise UserError(
            f"--resume {resume}: no complete checkpoint there",
            f"give a {CHECKPOINT_PREFIX}<step> folder, a run directory that has one, or auto",
        )
    return checkpoints[-1]


def write_atomic(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def save_recipe(run_dir: Path, recipe: Recipe) -> None:
    write_atomic(run_dir / RECIPE_FILE, recipe.to_yaml())


def save_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> None:
    """Written last: its presence marks the run as finished."""
    write_atomic(run_dir / METRICS_FILE, json.dumps(metrics, indent=2, default=str) + "\n")


def write_card(
    run_dir: Path,
    *,
    command: str,
    title: str,
    what: str,
    recipe: Recipe,
    results: Mapping[str, Any],
) -> None:
    """The run's README.md: what it is, how it was made, on what, and what came out."""
    rows = "\n".join(f"| {key} | {value} |" for key, value in results.items())
    data = f"`{recipe.data.train}`"
    if recipe.data.validation:
        data += f", validation: `{recipe.data.validation}`"
    card = f"""# {title}

{what}

Made with llmkit {__version__}. Reproduce it with the recipe saved beside this file:

```
llmkit {command} --recipe {run_dir / RECIPE_FILE}
```

Training data: {data}.

## Results

| metric | value |
|---|---|
{rows}

## Recipe

```yaml
{recipe.to_yaml().rstrip()}
```
"""
    write_atomic(run_dir / CARD_FILE, card)


@dataclass
class Card:
    """What a run's README.md says beyond the recipe: a title, one paragraph, the results."""

    title: str
    what: str
    results: Mapping[str, Any]


@dataclass
class Run:
    """One command's run directory through its life (see the module's docstring)."""

    dir: Path
    recipe: Recipe
    command: str  # the llmkit command that reproduces it, e.g. pretrain-clm
    overwrite: bool = False
    resuming: bool = False
    resume_from: Path | None = None  # the checkpoint training continues from
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(
        cls,
        recipe: Recipe,
        command: str,
        *,
        output_dir: Path | None = None,
        overwrite: bool = False,
        resume: str | None = None,
        resumable: bool = True,
    ) -> Run:
        """Checked before any work: a run that would destroy something fails now.
        `resumable`: the command takes --resume (tokenize does not)."""
        run_dir = Path(output_dir) if output_dir else recipe.resolved_output_dir
        check_output_dir(
            run_dir, overwrite=overwrite, resume=resume is not None, resumable=resumable
        )
        resume_from = resolve_resume(run_dir, resume)
        return cls(run_dir, recipe, command, overwrite, resume is not None, resume_from)

    def summary(self, **fields: Any) -> dict[str, Any]:
        """The start of the run's metrics.json: which command wrote it, and where."""
        return {"command": self.command, "output_dir": str(self.dir), **fields}

    def claim(self, *, main_process: bool = True) -> None:
        """Every input is checked: only now may an earlier run in the directory be replaced."""
        if main_process:
            claim_output_dir(self.dir, overwrite=self.overwrite, resume=self.resuming)
            save_recipe(self.dir, self.recipe)

    def finish(
        self,
        metrics: dict[str, Any],
        card: Card,
        *,
        trainer: Trainer | None = None,
        trained: bool = True,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> dict[str, Any]:
        """Save what the run made (the trainer's model and state when it `trained`, the
        tokenizer), the card, and metrics.json last. Every process calls it (saving a
        sharded model needs them all); only the main one writes files."""
        # imported here, not above: `llmkit report` and `--help` read this module, and the
        # tokenizer module brings transformers and torch (3 s of start-up)
        from llmkit.tokenizer import save_tokenizer

        metrics["wall_seconds"] = time.perf_counter() - self.started
        saves_model = trainer is not None and trained
        if saves_model:
            trainer.save_model(str(self.dir))
        if trainer is None or trainer.is_world_process_zero():
            # Trainer pickles its arguments beside the weights; recipe.yaml already says it
            # all, and a run directory holds no pickles.
            (self.dir / "training_args.bin").unlink(missing_ok=True)
            if tokenizer is not None:
                save_tokenizer(tokenizer, self.dir)
            if saves_model:
                trainer.state.save_to_json(str(self.dir / "trainer_state.json"))
            write_card(
                self.dir,
                command=self.command,
                title=card.title,
                what=card.what,
                recipe=self.recipe,
                results=card.results,
            )
            save_metrics(self.dir, metrics)
        return metrics

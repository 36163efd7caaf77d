"""Hyper-parameter search on Optuna: search spaces as typed on the command line, the study
(kept in SQLite inside the sweep folder, so a re-run continues it), and the callback through
which a trial's training reports its evaluations and learns it was pruned.

A space is `KEY=KIND:ARGS`: `train.lr=loguniform:1e-5:1e-2`, `train.warmup=uniform:0:0.1`,
`model.layers=int:2:6`, `train.schedule=choice:cosine,linear`. A `--grid KEY=V1,V2` axis is
the same as `choice:V1,V2`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmkit.errors import UserError, did_you_mean

KINDS = ("loguniform", "uniform", "int", "choice")
SEARCHES = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband")
STUDY_FILE = "study.db"
STUDY_NAME = "sweep"
PRUNED_FILE = "pruned.json"  # in a trial's run directory: the pruner stopped it here
TRIAL_ENV = "LLMKIT_TRIAL"  # set for a trial's process: where to report its evaluations


@dataclass(frozen=True)
class Dimension:
    """One searched recipe key."""

    key: str
    kind: str  # loguniform, uniform, int or choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise UserError(
            f"--search grid needs values to list; {self.key} is {self.kind}:{self.low}:{self.high}",
            "give it as choice:A,B,C or int:A:B, or search it with tpe or random",
        )

    def extremes(self) -> list:
        """The values that check the key before any trial runs."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--space '{spec}': '{text}' is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"--space '{spec}': '{text}' is not a finite number")
    return value


def parse_space(spec: str) -> Dimension:
    """`KEY=KIND:ARGS` → a Dimension; every way of writing it wrong is one UserError."""
    example = "e.g. --space train.lr=loguniform:1e-5:1e-2 or --space model.layers=choice:2,4"
    key, sep, rest = spec.partition("=")
    kind, colon, args = rest.partition(":")
    key, kind = key.strip(), kind.strip()
    if not sep or not key or not colon:
        raise UserError(f"--space '{spec}' is not KEY=KIND:ARGS", example)
    if kind not in KINDS:
        raise UserError(
            f"--space '{spec}': unknown kind '{kind}'{did_you_mean(kind, KINDS)}",
            f"kinds: {', '.join(KINDS)}",
        )
    if kind == "choice":
        choices = tuple(v.strip() for v in args.split(",") if v.strip())
        if not choices:
            raise UserError(f"--space '{spec}': choice needs at least one value", example)
        return Dimension(key, kind, choices=choices)
    bounds = args.split(":")
    if len(bounds) != 2:
        raise UserError(f"--space '{spec}': {kind} takes LOW:HIGH", example)
    low, high = (_number(b, spec) for b in bounds)
    if low >= high:
        raise UserError(f"--space '{spec}': LOW ({low:g}) must be below HIGH ({high:g})")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"--space '{spec}': loguniform needs LOW above 0 (its log is taken)")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise UserError(f"--space '{spec}': int bounds must be whole numbers")
    return Dimension(key, kind, low, high)


def grid_axis(spec: str) -> Dimension:
    """`--grid KEY=V1,V2,...` as a choice dimension."""
    key, sep, values = spec.partition("=")
    dimension = parse_space(f"{key}=choice:{values}") if sep else None
    if dimension is None:
        raise UserError(f"--grid '{spec}' is not KEY=V1,V2,...", "e.g. --grid train.lr=1e-4,3e-4")
    return dimension


def as_override(key: str, value: Any) -> str:
    """A suggested value as `--set` text (floats in full, so that the recipe gets them)."""
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"


def minimizes(metric: str) -> bool:
    """Losses and perplexities go down; accuracies, F1, BLEU, exact match go up."""
    return any(word in metric for word in ("loss", "perplexity", "bits_per_byte", "seconds"))


def make_pruner(name: str | None):
    """The study's pruner (also built in each trial's process, which asks it)."""
    import optuna

    if name == "median":
        # a trial stops when an evaluation is worse than the median of the finished trials'
        # at the same step, once 2 trials have finished
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def good_share(finished: int) -> int:
    """How many of the finished trials TPE models as the good ones: a quarter (hyperopt's
    gamma), at most 25. Optuna's default, a tenth, suits budgets of hundreds of trials; with a
    dozen it is the single best trial, often a lucky draw of a noisy metric, where a quarter
    models the region the good trials share."""
    return min(math.ceil(0.25 * finished), 25)


def open_study(folder: Path, settings: dict[str, Any], dimensions: list[Dimension], trials: int):
    """The sweep folder's study: created, or loaded when the same sweep is run again (its
    settings must match: another search in the same folder would mix two experiments)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(folder / STUDY_FILE).resolve()}"
    seed = settings["seed"]
    samplers = {
        # the first quarter of the trials (at least 2) random, then the model's suggestions
        "tpe": lambda: optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(2, trials // 4), multivariate=True, gamma=good_share
        ),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        # every point is queued in grid order when the study starts (optuna's GridSampler
        # stops the study from inside tell(), which only works within study.optimize)
        "grid": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction=settings["direction"],
        sampler=samplers[settings["search"]](),
        pruner=make_pruner(settings["prune"]),
        load_if_exists=True,
    )
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", settings)
        if settings["search"] == "grid":
            keys = [d.key for d in dimensions]
            for values in itertools.product(*(d.grid_values() for d in dimensions)):
                study.enqueue_trial(dict(zip(keys, values, strict=True)))
    elif saved != json.loads(json.dumps(settings)):
        changed = [k for k in settings if saved.get(k) != json.loads(json.dumps(settings[k]))]
        raise UserError(
            f"{folder} holds a search with other settings ({', '.join(changed)})",
            "run it with the settings it was started with, or choose another --output-dir",
        )
    return study, storage


class TrialReporter(TrainerCallback):
    """In a trial's training process: each evaluation of the searched metric goes to the study,
    and when the pruner says stop, training stops cleanly (the run finishes with a final
    evaluation and its files, marked by pruned.json)."""

    def __init__(self, storage: str, trial_id: int, metric: str, pruner: str):
        import optuna

        self.metric = metric
        study = optuna.load_study(
            storage=storage, study_name=STUDY_NAME, pruner=make_pruner(pruner)
        )
        self.trial = optuna.Trial(study, trial_id)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.metric not in metrics or state.global_step == 0:
            return
        if not state.is_world_process_zero:
            return
        self.trial.report(float(metrics[self.metric]), state.global_step)
        if self.trial.should_prune():
            control.should_training_stop = True
            marker = Path(args.output_dir) / PRUNED_FILE
            marker.write_text(
                json.dumps({"step": state.global_step, self.metric: metrics[self.metric]})
            )


def trial_callbacks() -> list[TrainerCallback]:
    """The reporter when this process is a search trial (the sweep sets LLMKIT_TRIAL), else
    nothing."""
    spec = os.environ.get(TRIAL_ENV)
    if not spec:
        return []
    trial = json.loads(spec)
    return [TrialReporter(trial["storage"], trial["trial_id"], trial["metric"], trial["pruner"])]

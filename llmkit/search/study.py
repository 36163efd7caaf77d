"""The Optuna study of a search: kept in SQLite inside the sweep folder (so that a re-run
continues it), with its sampler and pruner, and the trials a killed search left running
recovered on the next run.

optuna is imported by the functions that use it: every training process loads the search's
trial hook (`search/trial.py`), and only a search's trials need optuna.
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import UserError
from llmkit.search.space import Dimension, as_override

SEARCHES = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband")
STUDY_FILE = "study.db"
STUDY_NAME = "sweep"
TRIAL_ENV = "LLMKIT_TRIAL"  # set for a trial's process: where to report its evaluations
PRUNED_FILE = "pruned.json"  # in a trial's run directory: the pruner stopped it here


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


def recover_interrupted(study) -> None:
    """Trials left running by a killed sweep: failed (and not counted), their parameters queued
    again with their run directory, so that the re-run resumes them from a checkpoint."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"run_dir": trial.user_attrs["run_dir"]})


def counted_trials(study) -> int:
    """Trials that used the budget: finished, pruned, or failed (not interrupted)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(
        t.state in done
        or (t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("interrupted"))
        for t in study.get_trials(deepcopy=False)
    )


@dataclass
class Search:
    """A sweep folder's Optuna study, read back: its settings and its trials."""

    folder: Path
    settings: dict[str, Any]
    trials: list  # optuna FrozenTrial, in order

    @property
    def keys(self) -> list[str]:
        return [d["key"] for d in self.settings["dimensions"]]

    def best(self):
        done = [t for t in self.trials if t.state.name == "COMPLETE"]
        if not done:
            return None
        pick = min if self.settings["direction"] == "minimize" else max
        return pick(done, key=lambda t: t.value)

    def command(self, trial) -> str:
        """The command that runs the trial's point again (its first seed)."""
        line = ["llmkit", self.settings["command"], "--recipe", self.settings["recipe"]]
        searched = [as_override(key, value) for key, value in trial.params.items()]
        overrides = [*self.settings["overrides"], *searched]
        return shlex.join([*line, *(arg for o in overrides for arg in ("--set", o))])


def load_search(folder: str | Path) -> Search | None:
    """The study of a sweep folder (study.db), or None when it holds none."""
    folder = Path(folder)
    if not (folder / STUDY_FILE).is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(folder / STUDY_FILE).resolve()}"
    study = optuna.load_study(storage=storage, study_name=STUDY_NAME)
    trials = [t for t in study.get_trials() if not t.user_attrs.get("interrupted")]
    return Search(folder, study.user_attrs["settings"], trials)

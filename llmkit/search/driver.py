"""A search: an Optuna study over a sweep's spaces, its trials run as `llmkit` processes,
`parallel` at a time, each reporting its evaluations to the pruner (`search/trial.py`)."""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import UserError
from llmkit.recipe import load_recipe
from llmkit.rundir import is_finished_run
from llmkit.search.runs import Point, Sweep, run_point
from llmkit.search.space import Dimension, as_override, grid_axis, minimizes, parse_space
from llmkit.search.study import (
    PRUNED_FILE,
    PRUNERS,
    SEARCHES,
    TRIAL_ENV,
    counted_trials,
    open_study,
    recover_interrupted,
)
from llmkit.tasks import check_task_name
from llmkit.tasks.finetuning import finetuning_of

DEFAULT_TRIALS = 12
SPACE_EXAMPLE = "e.g. --space train.lr=loguniform:1e-5:1e-2 --space model.layers=choice:2,4"


@dataclass(frozen=True)
class SearchPlan:
    folder: Path
    dimensions: list[Dimension]
    settings: dict[str, Any]  # what the study was started with (a re-run must match)
    trials: int
    recipe_seed: int


def default_metric(command: str, recipe) -> str:
    """What a search optimises unless told: the evaluation loss of pretraining, the task's
    main metric for fine-tuning."""
    if command != "finetune":
        return "eval_loss"
    return finetuning_of(check_task_name(recipe.task.name)).main_metric(recipe)


def search_plan(sweep: Sweep) -> SearchPlan:
    """Everything checked before the first trial: the spaces, every key at its extremes, the
    metric and direction, the budget."""
    dimensions = [parse_space(spec) for spec in sweep.spaces]
    dimensions += [grid_axis(spec) for spec in sweep.grid]
    if not dimensions:
        raise UserError("a search needs at least one --space (or --grid)", SPACE_EXAMPLE)
    keys = [d.key for d in dimensions]
    if len(set(keys)) < len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise UserError(f"{twice} is searched twice", "give each key one --space or --grid")
    search = sweep.search or ("tpe" if sweep.spaces else "grid")
    checks = [
        (search in SEARCHES, f"--search {search}: not one of {', '.join(SEARCHES)}"),
        (
            sweep.prune in (None, *PRUNERS),
            f"--prune {sweep.prune}: not one of {', '.join(PRUNERS)}",
        ),
        (sweep.direction in (None, "minimize", "maximize"), "--direction is minimize or maximize"),
        (sweep.trials is None or sweep.trials >= 1, "--trials must be at least 1"),
        (sweep.parallel >= 1, "--parallel must be at least 1"),
        (sweep.seeds >= 1, "--seeds must be at least 1"),
        (
            sweep.sample is None,
            "--random N samples the plain grid; a search takes --search random --trials N",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    base = load_recipe(sweep.recipe, list(sweep.overrides))
    for dimension in dimensions:  # a typo or a bad value fails here, before hours of training
        for value in dimension.extremes():
            load_recipe(sweep.recipe, [*sweep.overrides, as_override(dimension.key, value)])
    metric = sweep.metric or default_metric(sweep.command, base)
    direction = sweep.direction or ("minimize" if minimizes(metric) else "maximize")
    if search == "grid":
        size = math.prod(len(d.grid_values()) for d in dimensions)
        trials = min(sweep.trials or size, size)
    else:
        trials = sweep.trials or DEFAULT_TRIALS
    if sweep.prune and not base.train.eval_every:
        raise UserError(
            "--prune compares the evaluations during training, and the recipe has none",
            "set train.eval_every, e.g. --set train.eval_every=20",
        )
    folder = Path(sweep.output_dir) if sweep.output_dir else Path("runs") / f"{base.name}-search"
    settings = {
        "command": sweep.command,
        "recipe": sweep.recipe,
        "overrides": list(sweep.overrides),
        "dimensions": [vars(d) | {"choices": list(d.choices)} for d in dimensions],
        "search": search,
        "metric": metric,
        "direction": direction,
        "prune": sweep.prune,
        "seeds": sweep.seeds,
        "seed": sweep.seed,
    }
    return SearchPlan(folder, dimensions, settings, trials, base.seed)


def slot_environment(slot: int, parallel: int) -> dict[str, str]:
    """What a trial process of `parallel` at once gets: its own GPU, or its share of cores."""
    if parallel == 1:
        return {}
    import torch

    gpus = torch.cuda.device_count()
    if gpus:
        return {"CUDA_VISIBLE_DEVICES": str(slot % gpus)}
    share = max(1, (os.cpu_count() or 1) // parallel)
    return {"OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share)}


def run_trial(sweep: Sweep, plan: SearchPlan, trial, storage: str, slot: int):
    """A trial's runs (one per seed): (state, value, outcome)."""
    import optuna

    states = optuna.trial.TrialState
    overrides = tuple(as_override(k, v) for k, v in trial.params.items())
    run_dir = plan.folder / trial.user_attrs["run_dir"]
    values, outcome = [], {"point": run_dir.name, "status": "ran", "params": trial.params}
    for index in range(sweep.seeds):
        directory = run_dir if sweep.seeds == 1 else run_dir / f"seed-{index}"
        seeded = () if sweep.seeds == 1 else (f"seed={plan.recipe_seed + index}",)
        if not is_finished_run(directory):
            line = sweep.command_line(
                Point(overrides + seeded), directory, resume=directory.exists()
            )
            env = slot_environment(slot, sweep.parallel)
            if index == 0 and sweep.prune:  # the first seed's evaluations go to the pruner
                reported = {
                    "storage": storage,
                    "trial_id": trial._trial_id,
                    "metric": plan.settings["metric"],
                    "pruner": sweep.prune,
                }
                env[TRIAL_ENV] = json.dumps(reported)
            ran = run_point(line, run_dir.name, env)
            if ran["status"] == "failed":
                return states.FAIL, None, {**outcome, **ran}
        if (directory / PRUNED_FILE).is_file():
            return states.PRUNED, None, {**outcome, "status": "pruned"}
        metrics = json.loads((directory / "metrics.json").read_text())
        metric = plan.settings["metric"]
        if metric not in metrics:
            raise UserError(
                f"--metric {metric} is not in {directory / 'metrics.json'}",
                f"its keys: {', '.join(k for k in metrics if isinstance(metrics[k], int | float))}",
            )
        values.append(float(metrics[metric]))
    value = statistics.fmean(values)
    trial.set_user_attr("values", values)
    outcome.update(value=value, values=values)
    if len(values) > 1:
        outcome["std"] = statistics.stdev(values)
    return states.COMPLETE, value, outcome


def run_search(sweep: Sweep) -> dict[str, Any]:
    """An Optuna study over the sweep's spaces: trials until `trials` have finished (pruned
    and failed ones count, interrupted ones do not), `parallel` at a time."""
    plan = search_plan(sweep)
    study, storage = open_study(plan.folder, plan.settings, plan.dimensions, plan.trials)
    recover_interrupted(study)
    lock = threading.Lock()
    running = [0]
    outcomes: list[dict[str, Any]] = []

    def work(slot: int) -> None:
        while True:
            with lock:
                if counted_trials(study) + running[0] >= plan.trials:
                    return
                trial = study.ask()
                for dimension in plan.dimensions:
                    dimension.suggest(trial)
                trial.set_user_attr(
                    "run_dir", trial.user_attrs.get("run_dir") or f"trial-{trial.number:03d}"
                )
                running[0] += 1
            try:
                state, value, outcome = run_trial(sweep, plan, trial, storage, slot)
            except BaseException:
                with lock:
                    running[0] -= 1
                raise
            with lock:
                study.tell(trial, value if value is not None else None, state=state)
                running[0] -= 1
                outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=sweep.parallel) as pool:
        for future in [pool.submit(work, slot) for slot in range(sweep.parallel)]:
            future.result()
    return {
        "sweep": str(plan.folder),
        "search": plan.settings["search"],
        "metric": plan.settings["metric"],
        "direction": plan.settings["direction"],
        "points": plan.trials,
        "ran": sum(o["status"] == "ran" for o in outcomes),
        "pruned": sum(o["status"] == "pruned" for o in outcomes),
        "skipped": 0,
        "failed": [o["point"] for o in outcomes if o["status"] == "failed"],
        "outcomes": outcomes,
    }

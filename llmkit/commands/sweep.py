"""`llmkit sweep`: run a command over a grid of recipe overrides, then compare the runs.

Each point runs as its own `llmkit` process (a failure or a leak stays with its point) in a
run directory named after its overrides, under one sweep folder. A point whose run finished
is skipped, and one left unfinished continues from its checkpoint, so re-running the same
sweep after an interruption does only what is left. `--print` gives the same command lines
for a scheduler instead.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.commands.report import run_report
from llmkit.console import out
from llmkit.errors import Interrupted, UserError
from llmkit.recipe import load_recipe
from llmkit.rundir import is_finished_run
from llmkit.search import (
    PRUNED_FILE,
    PRUNERS,
    SEARCHES,
    TRIAL_ENV,
    Dimension,
    as_override,
    grid_axis,
    minimizes,
    open_study,
    parse_space,
)

SWEEP_COMMANDS = ("pretrain-clm", "pretrain-mlm", "finetune")
DEFAULT_TRIALS = 12
SPACE_EXAMPLE = "e.g. --space train.lr=loguniform:1e-5:1e-2 --space model.layers=choice:2,4"
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Point:
    overrides: tuple[str, ...]  # the grid's "key=value" for this point

    @property
    def name(self) -> str:
        """A folder name from the overrides: train.lr=3e-4 model.layers=4 → lr=3e-4__layers=4."""
        parts = []
        for override in self.overrides:
            key, value = override.split("=", 1)
            parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
        return re.sub(r"[^A-Za-z0-9._=+-]", "_", "__".join(parts))


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """["train.lr=1e-4,3e-4", ...] → [("train.lr", ["1e-4", "3e-4"]), ...]."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise UserError(
                f"--grid '{spec}' is not KEY=V1,V2,...", "e.g. --grid train.lr=1e-4,3e-4"
            )
        if any(key.strip() == k for k, _ in grid):
            raise UserError(f"--grid names {key.strip()} twice", "give each key one --grid")
        grid.append((key.strip(), choices))
    if not grid:
        raise UserError(
            "sweep needs at least one --grid KEY=V1,V2 (a grid) or --space KEY=KIND:ARGS (a search)"
        )
    return grid


def grid_points(
    grid: list[tuple[str, list[str]]], sample: int | None = None, seed: int = 0
) -> list[Point]:
    """The cartesian product in grid order, or `sample` distinct points of it (seeded)."""
    every = [
        Point(tuple(f"{key}={value}" for (key, _), value in zip(grid, values, strict=True)))
        for values in itertools.product(*(choices for _, choices in grid))
    ]
    if sample is None or sample >= len(every):
        return every
    if sample < 1:
        raise UserError("--random must be at least 1")
    chosen = sorted(random.Random(seed).sample(range(len(every)), sample))
    return [every[i] for i in chosen]


@dataclass(frozen=True)
class Sweep:
    """What `llmkit sweep` was asked: a command, a recipe, the grid and the shared overrides."""

    command: str  # pretrain-clm, pretrain-mlm or finetune
    recipe: str
    grid: tuple[str, ...]  # "KEY=V1,V2" specs, one per axis
    overrides: tuple[str, ...] = ()  # --set, the same for every point
    output_dir: str | Path | None = None  # the sweep folder (default runs/<name>-sweep)
    sample: int | None = None  # --random N
    seed: int = 0
    # A search (Optuna) instead of the plain grid: the spaces, the sampler, the budget...
    spaces: tuple[str, ...] = ()  # "KEY=KIND:ARGS" specs (search.parse_space)
    search: str | None = None  # tpe, random or grid (default tpe with --space)
    trials: int | None = None  # default: the grid's size, else 12
    metric: str | None = None  # a metrics.json key (default: the command's)
    direction: str | None = None  # minimize or maximize (default: from the metric)
    prune: str | None = None  # median or hyperband
    parallel: int = 1  # trials at once
    seeds: int = 1  # runs per trial, each with its own seed; the trial's value is the mean

    @property
    def searches(self) -> bool:
        """A search (Optuna study) rather than the plain grid of points."""
        plain = (None, 1, 1)
        asked = (
            self.trials or self.metric or self.direction or self.prune,
            self.parallel,
            self.seeds,
        )
        return bool(self.spaces or self.search) or asked != plain

    def plan(self) -> tuple[Path, list[tuple[Point, Path]]]:
        """(sweep folder, [(point, run dir)]), every point's recipe checked before any runs."""
        if self.command not in SWEEP_COMMANDS:
            raise UserError(
                f"sweep runs one of {', '.join(SWEEP_COMMANDS)}, not '{self.command}'",
                "e.g. llmkit sweep pretrain-clm --recipe gpt2-tiny --grid train.lr=1e-4,3e-4",
            )
        points = grid_points(parse_grid(list(self.grid)), self.sample, self.seed)
        name = None
        for point in points:  # a typo or a bad value fails here, before hours of training
            name = load_recipe(self.recipe, [*self.overrides, *point.overrides]).name
        folder = Path(self.output_dir) if self.output_dir else Path("runs") / f"{name}-sweep"
        return folder, [(point, folder / point.name) for point in points]

    def command_line(self, point: Point, run_dir: Path, *, resume: bool = False) -> list[str]:
        line = ["llmkit", self.command, "--recipe", self.recipe]
        for override in [*self.overrides, *point.overrides]:
            line += ["--set", override]
        line += ["--output-dir", str(run_dir)]
        # An unfinished point continues from its newest checkpoint (or starts again).
        return [*line, "--resume", "auto", "--json"] if resume else [*line, "--json"]


def run_point(line: list[str], name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One point's `llmkit` process: its outcome, with its --json summary when it finished.
    Its progress goes to the terminal (stderr). Ctrl-C stops the sweep, to be re-run."""
    finished = subprocess.run(
        [sys.executable, "-m", "llmkit", *line[1:]],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if finished.returncode == EXIT_INTERRUPTED:
        raise Interrupted(
            f"sweep interrupted at {name}; run the same command again to continue "
            "(finished points are kept)"
        )
    outcome: dict[str, Any] = {"point": name, "exit_code": finished.returncode}
    if finished.returncode == 0:
        outcome["status"] = "ran"
        outcome["summary"] = json.loads(finished.stdout.strip().splitlines()[-1])
    else:
        outcome["status"] = "failed"
    return outcome


def run_sweep(sweep: Sweep) -> dict[str, Any]:
    """Run every point not finished yet, then report the finished ones."""
    if sweep.searches:
        return run_search(sweep)
    folder, plan = sweep.plan()
    outcomes: list[dict[str, Any]] = []
    for point, run_dir in plan:
        if is_finished_run(run_dir):
            outcomes.append({"point": point.name, "status": "skipped (finished)"})
            continue
        line = sweep.command_line(point, run_dir, resume=run_dir.exists())
        outcomes.append(run_point(line, point.name))
    done = [run_dir for _, run_dir in plan if is_finished_run(run_dir)]
    report = run_report(done, folder / "report") if done else None
    return {
        "sweep": str(folder),
        "points": len(plan),
        "ran": sum(o["status"] == "ran" for o in outcomes),
        "skipped": sum(o["status"].startswith("skipped") for o in outcomes),
        "failed": [o["point"] for o in outcomes if o["status"] == "failed"],
        "outcomes": outcomes,
        "report": report,
    }


def shell_lines(sweep: Sweep) -> list[str]:
    """The sweep as shell command lines, one per point (for a scheduler)."""
    _, plan = sweep.plan()
    return [shlex.join(sweep.command_line(point, run_dir)) for point, run_dir in plan]


def sweep_from_flags(print_only: bool = False, **flags: Any) -> dict[str, Any] | None:
    """`llmkit sweep`: run the sweep, or with --print only print its command lines."""
    for listed in ("grid", "spaces", "overrides"):
        flags[listed] = tuple(flags.get(listed, ()))
    sweep = Sweep(**flags)
    if print_only and sweep.searches:
        raise UserError(
            "--print lists a plain grid's points; a search chooses its trials as it goes",
            "run it, or share one study between machines (README, llmkit sweep)",
        )
    if not print_only:
        return run_sweep(sweep)
    for line in shell_lines(sweep):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    return None


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
    from llmkit.tasks import check_task_name

    return check_task_name(recipe.task.name).main_metric(recipe)


def search_plan(sweep: Sweep) -> SearchPlan:
    """Everything checked before the first trial: the spaces, every key at its extremes, the
    metric and direction, the budget."""
    if sweep.command not in SWEEP_COMMANDS:
        raise UserError(f"sweep runs one of {', '.join(SWEEP_COMMANDS)}, not '{sweep.command}'")
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


def _recover_interrupted(study) -> None:
    """Trials left running by a killed sweep: failed (and not counted), their parameters queued
    again with their run directory, so that the re-run resumes them from a checkpoint."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"run_dir": trial.user_attrs["run_dir"]})


def _counted(study) -> int:
    """Trials that used the budget: finished, pruned, or failed (not interrupted)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(
        t.state in done
        or (t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("interrupted"))
        for t in study.get_trials(deepcopy=False)
    )


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
    and failed ones count, interrupted ones do not), `parallel` at a time, then the report."""
    from llmkit.commands.report import run_report

    plan = search_plan(sweep)
    study, storage = open_study(plan.folder, plan.settings, plan.dimensions, plan.trials)
    _recover_interrupted(study)
    lock = threading.Lock()
    running = [0]
    outcomes: list[dict[str, Any]] = []

    def work(slot: int) -> None:
        while True:
            with lock:
                if _counted(study) + running[0] >= plan.trials:
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
    report = run_report([plan.folder], plan.folder / "report")
    best = report.get("best")
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
        "best": best,
        "report": report,
    }

"""`llmkit sweep`: run a command over a grid of recipe overrides, or search them (the search
itself lives in `llmkit/search/`), then compare the runs.

Each point runs as its own `llmkit` process in a run directory named after its overrides,
under one sweep folder. A point whose run finished is skipped, and one left unfinished
continues from its checkpoint, so re-running the same sweep after an interruption does only
what is left. `--print` gives the same command lines for a scheduler instead.
"""

from __future__ import annotations

import itertools
import json
import random
import shlex
from pathlib import Path
from typing import Any

from llmkit.commands.report import run_report
from llmkit.console import out
from llmkit.errors import UserError
from llmkit.recipe import load_recipe
from llmkit.rundir import METRICS_FILE, is_finished_run
from llmkit.search.driver import run_search
from llmkit.search.runs import Point, Sweep, run_point


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


def grid_plan(sweep: Sweep) -> tuple[Path, list[tuple[Point, Path]]]:
    """(sweep folder, [(point, run dir)]), every point's recipe checked before any runs."""
    points = grid_points(parse_grid(list(sweep.grid)), sweep.sample, sweep.seed)
    name = None
    for point in points:  # a typo or a bad value fails here, before hours of training
        name = load_recipe(sweep.recipe, [*sweep.overrides, *point.overrides]).name
    folder = Path(sweep.output_dir) if sweep.output_dir else Path("runs") / f"{name}-sweep"
    return folder, [(point, folder / point.name) for point in points]


def run_sweep(sweep: Sweep) -> dict[str, Any]:
    """Run every point (or trial) not finished yet, then report the finished ones."""
    if sweep.searches:
        searched = run_search(sweep)
        report = run_report([Path(searched["sweep"])], Path(searched["sweep"]) / "report")
        return {**searched, "best": report.get("best"), "report": report}
    folder, plan = grid_plan(sweep)
    outcomes: list[dict[str, Any]] = []
    for point, run_dir in plan:
        if is_finished_run(run_dir):
            outcomes.append({"point": point.name, "status": "skipped (finished)"})
            continue
        line = sweep.command_line(point, run_dir, resume=run_dir.exists())
        outcomes.append(run_point(line, point.name))
    metric = None  # what ranks the runs: the task's main metric, or the evaluation loss
    for outcome, (_, run_dir) in zip(outcomes, plan, strict=True):
        if is_finished_run(run_dir):
            metrics = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
            metric = metrics.get("main_metric", "eval_loss")
            if isinstance(metrics.get(metric), int | float):
                outcome["value"] = metrics[metric]
    done = [run_dir for _, run_dir in plan if is_finished_run(run_dir)]
    report = run_report(done, folder / "report") if done else None
    return {
        "sweep": str(folder),
        "metric": metric,
        "points": len(plan),
        "ran": sum(o["status"] == "ran" for o in outcomes),
        "skipped": sum(o["status"].startswith("skipped") for o in outcomes),
        "failed": [o["point"] for o in outcomes if o["status"] == "failed"],
        "outcomes": outcomes,
        "report": report,
    }


def shell_lines(sweep: Sweep) -> list[str]:
    """The sweep as shell command lines, one per point (for a scheduler)."""
    _, plan = grid_plan(sweep)
    return [shlex.join(sweep.command_line(point, run_dir)) for point, run_dir in plan]


def sweep_from_flags(print_only: bool = False, **flags: Any) -> dict[str, Any] | None:
    """`llmkit sweep`: run the sweep, or with --print only print its command lines."""
    for listed in ("grid", "spaces", "overrides"):
        flags[listed] = tuple(flags.get(listed, ()))
    sweep = Sweep(**flags)
    if print_only and sweep.searches:
        raise UserError(
            "--print lists a plain grid's points; a search chooses its trials as it goes",
            "run it, or share one study between machines (docs/commands/sweep.md)",
        )
    if not print_only:
        return run_sweep(sweep)
    for line in shell_lines(sweep):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    return None

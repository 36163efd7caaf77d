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
import random
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.commands.report import run_report
from llmkit.console import out
from llmkit.errors import Interrupted, UserError
from llmkit.recipe import load_recipe
from llmkit.rundir import is_finished_run

SWEEP_COMMANDS = ("pretrain-clm", "pretrain-mlm", "finetune")
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
        raise UserError("sweep needs at least one --grid KEY=V1,V2")
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


def run_sweep(sweep: Sweep) -> dict[str, Any]:
    """Run every point not finished yet, then report the finished ones."""
    folder, plan = sweep.plan()
    outcomes: list[dict[str, Any]] = []
    for point, run_dir in plan:
        if is_finished_run(run_dir):
            outcomes.append({"point": point.name, "status": "skipped (finished)"})
            continue
        line = sweep.command_line(point, run_dir, resume=run_dir.exists())
        # The point's progress goes to the terminal (stderr); its JSON summary is collected.
        finished = subprocess.run(
            [sys.executable, "-m", "llmkit", *line[1:]], stdout=subprocess.PIPE, text=True
        )
        if finished.returncode == EXIT_INTERRUPTED:
            raise Interrupted(
                f"sweep interrupted at {point.name}; run the same command again to continue "
                "(finished points are skipped)"
            )
        outcome: dict[str, Any] = {"point": point.name, "exit_code": finished.returncode}
        if finished.returncode == 0:
            outcome["status"] = "ran"
            outcome["summary"] = json.loads(finished.stdout.strip().splitlines()[-1])
        else:
            outcome["status"] = "failed"
        outcomes.append(outcome)
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
    flags["grid"] = tuple(flags["grid"])
    flags["overrides"] = tuple(flags.get("overrides", ()))
    sweep = Sweep(**flags)
    if not print_only:
        return run_sweep(sweep)
    for line in shell_lines(sweep):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    return None

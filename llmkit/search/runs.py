"""What a sweep or search was asked (`Sweep`), and how one of its runs goes: a point's
recipe overrides, its `llmkit` command line, and the process that runs it (its own, so that a
failure or a leak stays with its point)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import Interrupted, UserError

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

    def __post_init__(self) -> None:
        if self.command not in SWEEP_COMMANDS:
            raise UserError(
                f"sweep runs one of {', '.join(SWEEP_COMMANDS)}, not '{self.command}'",
                "e.g. llmkit sweep pretrain-clm --recipe gpt2-tiny --grid train.lr=1e-4,3e-4",
            )

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

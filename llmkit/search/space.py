"""Search spaces as typed on the command line: `KEY=KIND:ARGS`, e.g.
`train.lr=loguniform:1e-5:1e-2`, `train.warmup=uniform:0:0.1`, `model.layers=int:2:6`,
`train.schedule=choice:cosine,linear`. A `--grid KEY=V1,V2` axis is the same as
`choice:V1,V2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmkit.errors import UserError, did_you_mean

KINDS = ("loguniform", "uniform", "int", "choice")


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

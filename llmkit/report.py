"""Comparing finished runs: what differs between their recipes, their results, their curves.

A run directory already says everything: `recipe.yaml` (the resolved recipe), `metrics.json`
(the final figures), `trainer_state.json` (every logged loss, with the step and the tokens
seen) and, once `llmkit evaluate` ran on it, `eval/<task>.json` (lm-evaluation-harness's
figures). This module reads them, finds the recipe keys whose values differ between the
runs, and draws the loss curves against steps and against tokens, one line per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from llmkit.errors import UserError
from llmkit.search.study import Search

# Final figures worth a column, in this order, when at least one run has them.
RESULT_KEYS = (
    "train_loss",
    "eval_loss",
    "eval_perplexity",
    "eval_accuracy",
    "eval_f1",
    "eval_matthews_correlation",
    "eval_pearson",
    "eval_spearmanr",
    "tokens_per_second",
    "wall_seconds",
)
# Keys that always differ between runs and say nothing about the experiment.
IGNORED_KEYS = ("output_dir", "name")


@dataclass
class Run:
    directory: Path
    recipe: dict[str, Any]  # flattened: {"train.lr": 0.0003, ...}
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    # `llmkit evaluate`'s figures (eval/<task>.json): {"sst2_local/acc": 0.61, ...}
    evaluations: dict[str, float] = field(default_factory=dict)
    name: str = ""  # what the table and plots call it (load_runs); default: its folder name

    def __post_init__(self) -> None:
        self.name = self.name or self.directory.name

    def curve(self, key: str, x: str) -> tuple[list[float], list[float]]:
        """(x, y) of every log entry holding `key`; x is "step" or "tokens"."""
        points = [
            (entry["step"] if x == "step" else entry.get("num_input_tokens_seen"), entry[key])
            for entry in self.history
            if key in entry
        ]
        points = [(a, b) for a, b in points if a is not None]
        return [a for a, _ in points], [b for _, b in points]


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_run(directory: str | Path) -> Run:
    folder = Path(directory)
    recipe_file, metrics_file = folder / "recipe.yaml", folder / "metrics.json"
    if not recipe_file.is_file() or not metrics_file.is_file():
        raise UserError(
            f"{folder} is not a finished llmkit run (it needs recipe.yaml and metrics.json)",
            "give run directories written by pretrain-clm, pretrain-mlm or finetune",
        )
    state_file = folder / "trainer_state.json"
    history = json.loads(state_file.read_text())["log_history"] if state_file.is_file() else []
    return Run(
        folder,
        flatten(yaml.safe_load(recipe_file.read_text()) or {}),
        json.loads(metrics_file.read_text()),
        history,
        load_evaluations(folder),
    )


def load_runs(directories: list[str | Path]) -> list[Run]:
    """The runs, each named by the last parts of its path that tell it from the others
    (`a/run`, `b/run` for two folders both called `run`)."""
    runs = [load_run(directory) for directory in directories]
    parts = [run.directory.resolve().parts for run in runs]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth == max(map(len, parts)):
            break
    return [replace(run, name=name) for run, name in zip(runs, names, strict=True)]


def load_evaluations(folder: Path) -> dict[str, float]:
    """The harness figures `llmkit evaluate` saved in the run, as "<task>/<metric>"."""
    figures = {}
    for saved in sorted((folder / "eval").glob("*.json")):
        record = json.loads(saved.read_text())
        for metric, value in record.get("metrics", {}).items():
            figures[f"{record.get('task', saved.stem)}/{metric}"] = value
    return figures


def differing_keys(runs: list[Run]) -> list[str]:
    """Recipe keys whose values are not the same in every run, in recipe order."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.recipe if k not in keys]
    return [
        key
        for key in keys
        if key not in IGNORED_KEYS and len({repr(run.recipe.get(key)) for run in runs}) > 1
    ]


def comparison_rows(runs: list[Run]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows): one row per run with its differing keys and its results."""
    varied = differing_keys(runs)
    results = [key for key in RESULT_KEYS if any(key in run.metrics for run in runs)]
    evaluated = sorted({key for run in runs for key in run.evaluations})
    header = ["run", *varied, *results, *evaluated]
    rows = [
        [
            run.name,
            *(run.recipe.get(k) for k in varied),
            *(run.metrics.get(k) for k in results),
            *(run.evaluations.get(k) for k in evaluated),
        ]
        for run in runs
    ]
    return header, rows


def plot_losses(runs: list[Run], folder: Path) -> list[Path]:
    """loss_by_step.png and loss_by_tokens.png: train (solid) and eval (dashed) loss per run."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for x, label, filename in (
        ("step", "step", "loss_by_step.png"),
        ("tokens", "tokens seen", "loss_by_tokens.png"),
    ):
        figure, axis = plt.subplots(figsize=(8, 5))
        for index, run in enumerate(runs):
            colour = colours[index % len(colours)]
            for key, style in (("loss", "-"), ("eval_loss", "--")):
                xs, ys = run.curve(key, x)
                if xs:
                    name = f"{run.name} ({'train' if key == 'loss' else 'eval'})"
                    axis.plot(xs, ys, style, color=colour, label=name, linewidth=1.8)
        axis.set_xlabel(label)
        axis.set_ylabel("loss")
        axis.set_title(f"loss by {label}")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(folder / filename, dpi=100)
        plt.close(figure)
        written.append(folder / filename)
    return written


def markdown_page(header: list[str], rows: list[list[Any]], plots: list[Path]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["# llmkit report", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    lines.append("")
    lines += [f"![{plot.stem}]({plot.name})" for plot in plots]
    return "\n".join(lines) + "\n"


def trial_rows(search: Search) -> tuple[list[str], list[list[Any]]]:
    """One row per trial: its number, state, parameters, metric (mean ± std over seeds)."""
    import statistics

    metric = search.settings["metric"]
    seeds = search.settings["seeds"] > 1
    header = ["trial", "state", *search.keys, metric, *(["± std"] if seeds else [])]
    rows = []
    for trial in search.trials:
        values = trial.user_attrs.get("values", [])
        spread = [statistics.stdev(values) if len(values) > 1 else None] if seeds else []
        state = trial.state.name.lower().replace("complete", "finished")
        row = [trial.user_attrs.get("run_dir", trial.number), state]
        row += [trial.params.get(key) for key in search.keys]
        rows.append([*row, trial.value, *spread])
    return header, rows


def plot_search(search: Search, folder: Path) -> list[Path]:
    """history.png (each finished trial's metric and the best so far) and, per searched key,
    metric_by_<key>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    metric, minimize = search.settings["metric"], search.settings["direction"] == "minimize"
    done = [t for t in search.trials if t.state.name == "COMPLETE"]
    written = []
    figure, axis = plt.subplots(figsize=(8, 5))
    numbers, values = [t.number for t in done], [t.value for t in done]
    best = [min(values[: i + 1]) if minimize else max(values[: i + 1]) for i in range(len(values))]
    axis.plot(numbers, values, "o", label=metric)
    axis.plot(numbers, best, "-", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel(metric)
    axis.set_title(f"{search.settings['search']} search: {metric}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(folder / "history.png", dpi=100)
    plt.close(figure)
    written.append(folder / "history.png")
    for dimension in search.settings["dimensions"]:
        key = dimension["key"]
        figure, axis = plt.subplots(figsize=(6, 4))
        points = [(t.params[key], t.value) for t in done if key in t.params]
        labels = [str(x) for x, _ in points]
        categorical = dimension["kind"] == "choice"
        axis.plot(labels if categorical else [x for x, _ in points], [y for _, y in points], "o")
        if dimension["kind"] == "loguniform":
            axis.set_xscale("log")
        axis.set_xlabel(key)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        path = folder / f"metric_by_{key.replace('.', '_')}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written

"""Where output goes: tables and the --json line on stdout, progress and notes on stderr.

Under `accelerate launch`/`torchrun` only the main process prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from llmkit.errors import RunFailed

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def is_main_process() -> bool:
    # RANK is set by torchrun and accelerate launch; a plain process is rank 0.
    return os.environ.get("RANK", "0") == "0"


def progress_bar() -> Progress:
    """llmkit's progress bar: on stderr, on the main process only, gone when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not is_main_process(),
    )


@contextmanager
def stream_progress(description: str, position) -> Iterator[Callable[[], None]]:
    """A bar for reading a stream: MB read (of the total when known), MB/s and the time left.
    `position` has `done`, `total` (None: unknown) and `unit` ("bytes" or "rows"); the
    function yielded redraws the bar from it."""
    by_bytes = position.unit == "bytes"
    columns = (
        (DownloadColumn(binary_units=False), TransferSpeedColumn())
        if by_bytes
        else (MofNCompleteColumn(),)
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not is_main_process(),
    )
    with bar:
        task = bar.add_task(description, total=position.total)
        yield lambda: bar.update(task, completed=position.done)


def note(message: str) -> None:
    if is_main_process():
        err.print(message, highlight=False)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(title: str, rows: Mapping[str, Any], *, to_stderr: bool = False) -> None:
    if not is_main_process():
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, _format_value(value))
    (err if to_stderr else out).print(table)


def print_grid(title: str, header: list[str], rows: list[list[Any]], *, to_stderr=False) -> None:
    """A table of runs × columns (the first column, the run, left-aligned)."""
    if not is_main_process():
        return
    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(column, justify="left" if column == header[0] else "right")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console = err if to_stderr else out
    # As wide as its columns need, wider than the terminal if need be: a cut "train_l…" or a
    # folded number tells nothing. (rich renders at most console.width, so it is lent more.)
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    width = console.width
    try:
        console.width = max(width, needed)
        console.print(table)
    finally:
        console.width = width


def print_json(summary: Mapping[str, Any]) -> None:
    """The run's summary as one JSON object, the last line of stdout (`| tail -1 | jq`)."""
    if is_main_process():
        print(json.dumps(summary, default=str), flush=True)


# What each command shows when it is done (the CLI picks one per command).


def show_summary(title: str = "{command} → {output_dir}") -> Callable[[dict, bool], None]:
    """The usual result: a table titled `title` (filled from the summary), on stderr with
    --json, so that stdout holds only the JSON line."""

    def show(summary: dict[str, Any], as_json: bool) -> None:
        print_table(title.format(**summary), summary, to_stderr=as_json)
        if as_json:
            print_json(summary)

    return show


def show_evaluation(summary: dict[str, Any], as_json: bool) -> None:
    """One row per task and metric: value, ± standard error, shots, documents scored."""
    rows = [
        [
            result["task"],
            metric,
            value,
            result["stderr"].get(metric, ""),
            result["num_fewshot"] if result["num_fewshot"] is not None else "",
            result["samples"] if result["samples"] is not None else "",
        ]
        for result in summary["results"]
        for metric, value in result["metrics"].items()
    ]
    header = ["task", "metric", "value", "± stderr", "shots", "documents"]
    print_grid(f"evaluate {summary['model']}", header, rows, to_stderr=as_json)
    if is_main_process():
        (err if as_json else out).print(f"saved: {summary['output_dir']}", highlight=False)
    if as_json:
        print_json(summary)


def show_generated(summary: dict[str, Any], as_json: bool) -> None:
    """The completions were printed as they came; then the settings, and the JSON."""
    shown = {key: value for key, value in summary.items() if key != "results"}
    print_table("generate", shown, to_stderr=True)
    if as_json:
        print_json(summary)


def show_answers(summary: dict[str, Any], as_json: bool) -> None:
    if is_main_process():
        for found in summary["answers"]:
            out.print(f"{found['answer']}  [dim](score {found['score']:.2f})[/]", highlight=False)
    if as_json:
        print_json(summary)


def show_report(summary: dict[str, Any], as_json: bool) -> None:
    print_grid(f"{summary['runs']} runs", summary["header"], summary["rows"], to_stderr=as_json)
    note_to = err if as_json else out
    if is_main_process():
        note_to.print(f"report: {summary['report']}", highlight=False)
    if as_json:
        print_json(summary)


def show_sweep(summary: dict[str, Any], as_json: bool) -> None:
    """The points' outcomes, each with its value of the metric that ranks them; a sweep with
    failed points exits 1 once they are shown."""
    rows = {}
    for outcome in summary["outcomes"]:
        value = outcome.get("value")
        shown = f"  {summary['metric']} {value:.4g}" if value is not None else ""
        rows[outcome["point"]] = outcome["status"] + shown
    print_table(f"sweep → {summary['sweep']}", rows, to_stderr=as_json)
    if summary["report"] and is_main_process():
        (err if as_json else out).print(f"report: {summary['report']['report']}")
    if as_json:
        print_json(summary)
    if summary["failed"]:
        failed = ", ".join(summary["failed"])
        raise RunFailed(f"{len(summary['failed'])} of {summary['points']} points failed: {failed}")


def show_recipes(listing: dict[str, dict[str, str]], as_json: bool) -> None:
    """`llmkit recipes ls`: the shipped recipes, then the fine-tuning tasks and their recipes."""
    print_table("shipped recipes", listing["recipes"], to_stderr=as_json)
    print_table("fine-tuning tasks (task.name → recipes)", listing["tasks"], to_stderr=as_json)
    if as_json:
        print_json(listing)


def show_text(text: str, as_json: bool) -> None:
    if is_main_process():
        out.print(text, end="", highlight=False, markup=False)


def show_path(path: Any, as_json: bool) -> None:
    if is_main_process():
        out.print(f"{path}", highlight=False)
    if as_json:
        print_json({"path": str(path)})

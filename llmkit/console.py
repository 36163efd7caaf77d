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
    (err if to_stderr else out).print(table)


def print_json(summary: Mapping[str, Any]) -> None:
    """The run's summary as one JSON object, the last line of stdout (`| tail -1 | jq`)."""
    if is_main_process():
        print(json.dumps(summary, default=str), flush=True)

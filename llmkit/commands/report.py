"""`llmkit report`: a table and loss curves comparing finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmkit.errors import UserError
from llmkit.report import (
    comparison_rows,
    differing_keys,
    load_run,
    markdown_page,
    plot_losses,
)
from llmkit.rundir import write_atomic


def run_report(run_dirs: list[str | Path], output: str | Path | None = None) -> dict[str, Any]:
    """Compare `run_dirs`; write the plots and report.md into `output` (default: the first
    run's parent folder, `report/`). Returns the table and the written files."""
    if not run_dirs:
        raise UserError("report needs at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    folder = Path(output) if output else Path(run_dirs[0]).parent / "report"
    header, rows = comparison_rows(runs)
    plots = plot_losses(runs, folder)
    page = folder / "report.md"
    write_atomic(page, markdown_page(header, rows, plots))
    return {
        "runs": len(runs),
        "varied": differing_keys(runs),
        "header": header,
        "rows": rows,
        "report": str(page),
        "plots": [str(p) for p in plots],
    }

"""`llmkit report`: a table and loss curves comparing finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmkit.errors import UserError
from llmkit.report import (
    comparison_rows,
    differing_keys,
    load_runs,
    markdown_page,
    plot_losses,
    plot_search,
    trial_rows,
)
from llmkit.rundir import is_finished_run, write_atomic
from llmkit.search.study import Search, load_search


def run_report(run_dirs: list[str | Path], output: str | Path | None = None) -> dict[str, Any]:
    """Compare `run_dirs`; write the plots and report.md into `output` (default: the first
    run's parent folder, `report/`). Returns the table and the written files."""
    if not run_dirs:
        raise UserError("report needs at least one run directory")
    search = load_search(run_dirs[0]) if len(run_dirs) == 1 else None
    if search is not None:
        return search_report(search, Path(output) if output else search.folder / "report")
    runs = load_runs(run_dirs)
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


def search_report(search: Search, folder: Path) -> dict[str, Any]:
    """A search: the trials table (parameters, metric, state), the best trial with the
    command that reproduces it, its history and the metric against each parameter (PNG), and
    the loss curves of its finished runs."""
    header, rows = trial_rows(search)
    plots = plot_search(search, folder)
    finished = sorted(p.parent for p in search.folder.glob("**/metrics.json"))
    finished = [d for d in finished if is_finished_run(d) and "report" not in d.parts]
    if finished:
        plots += plot_losses(load_runs(finished), folder)
    best = search.best()
    summary_best = None
    lines = []
    if best is not None:
        summary_best = {
            "trial": best.user_attrs.get("run_dir", best.number),
            "params": best.params,
            search.settings["metric"]: best.value,
            "command": search.command(best),
        }
        lines = [
            "",
            f"Best: {summary_best['trial']}, {search.settings['metric']} {best.value:.4g}:",
            "",
            "```",
            summary_best["command"],
            "```",
        ]
    page = folder / "report.md"
    write_atomic(page, markdown_page(header, rows, plots) + "\n".join(lines) + "\n")
    return {
        "runs": len(rows),
        "header": header,
        "rows": rows,
        "best": summary_best,
        "report": str(page),
        "plots": [str(p) for p in plots],
    }

"""`llmkit evaluate`: lm-evaluation-harness tasks on a local model, saved beside its run."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmkit.checkpoints import require_model_dir
from llmkit.console import is_main_process
from llmkit.errors import UserError
from llmkit.harness import check_task_names, harness_model, run_harness, task_manager
from llmkit.rundir import write_atomic

EVAL_FOLDER = "eval"  # <run>/eval/<task>.json, read by llmkit report


def parse_tasks(tasks: str) -> list[str]:
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise UserError("--tasks names no task", "e.g. --tasks wikitext_local,sst2_local")
    return names


def parse_limit(limit: float | None) -> int | float | None:
    """--limit N documents per task, or a fraction of each below 1 (as the harness takes it)."""
    if limit is None:
        return None
    if limit <= 0:
        raise UserError(f"--limit must be above 0, not {limit:g}")
    if limit > 1 and not float(limit).is_integer():
        raise UserError(
            f"--limit {limit:g}: give a whole number of documents, or a fraction below 1"
        )
    return limit if limit < 1 else int(limit)


def run_evaluate(
    model_dir: str | Path,
    tasks: str,
    *,
    num_fewshot: int | None = None,
    limit: float | None = None,
    batch_size: int = 16,
    precision: str = "fp32",
    local_dir: str | None = None,
    include: list[Path] | None = None,
    output_dir: Path | None = None,
) -> dict[str, Any]:
    """Run harness `tasks` (comma-separated) on the model in `model_dir`; each task's figures
    go to `output_dir` (default: <model_dir>/eval)/<task>.json."""
    names = parse_tasks(tasks)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    if num_fewshot is not None and num_fewshot < 0:
        raise UserError(f"--num-fewshot must be 0 or more, not {num_fewshot}")
    limit = parse_limit(limit)
    if local_dir is not None and not Path(local_dir).is_dir():
        raise UserError(f"--local-dir {local_dir} is not a folder")
    # imported once the flags are checked: a wrong flag is answered before torch loads
    from llmkit.models import RELATIVE_POSITIONS, load_for_inference, model_positions
    from llmkit.perplexity import document_prefix_id

    require_model_dir(model_dir, "--model")  # before the harness reads its task index
    metadata = {"local_dir": local_dir, "num_fewshot": num_fewshot}
    manager = task_manager(include or [], metadata, names)
    check_task_names(manager, names)

    model, tokenizer, modeling = load_for_inference(model_dir, precision)
    if modeling == "mlm":
        raise UserError(
            f"{model_dir} is a masked LM; lm-evaluation-harness scores causal LMs and "
            "encoder-decoders",
            "for a masked LM: llmkit eval-ppl (pseudo-perplexity) or llmkit finetune glue/*",
        )
    positions = model_positions(model.config)
    lm = harness_model(
        model,
        tokenizer,
        batch_size=batch_size,
        # relative positions (T5) fit any length: the harness's own default window then
        max_length=None if positions == RELATIVE_POSITIONS else positions,
        prefix_id=document_prefix_id(tokenizer),
    )
    started = time.perf_counter()
    results = run_harness(lm, manager, names, num_fewshot=num_fewshot, limit=limit)
    seconds = time.perf_counter() - started
    folder = Path(output_dir) if output_dir else Path(model_dir) / EVAL_FOLDER
    from lm_eval import __version__ as harness_version

    for result in results if is_main_process() else ():  # under a launcher: rank 0 writes
        folder.mkdir(parents=True, exist_ok=True)
        record = asdict(result) | {
            "model": str(model_dir),
            "limit": limit,
            "precision": precision,
            "batch_size": batch_size,
            "lm_eval_version": harness_version,
        }
        write_atomic(folder / f"{result.task}.json", json.dumps(record, indent=2) + "\n")
    return {
        "command": "evaluate",
        "model": str(model_dir),
        "tasks": {r.task: r.metrics for r in results},
        "results": [asdict(r) for r in results],
        "output_dir": str(folder),
        "seconds": seconds,
    }

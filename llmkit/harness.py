"""lm-evaluation-harness on a local model: the tasks the field evaluates base models with.

The harness is an optional extra (`pip install 'llmkit[eval]'`). Its tasks are found by its
TaskManager: the harness's own (which read the hub), llmkit's shipped ones (`harness_tasks/`,
which read local copies), and any folder of task YAMLs the user includes. The model is the
one llmkit loads for every other command (a run directory, a checkpoint, or a LoRA run merged),
handed to the harness's `HFLM` wrapper with the same window and document prefix token as
`llmkit eval-ppl`, so that the two agree on the same documents.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.errors import UserError, did_you_mean

SHIPPED_TASKS = Path(__file__).parent / "harness_tasks"
INSTALL_HINT = "install it with: pip install 'llmkit[eval]' (or pip install lm-eval)"


def require_harness():
    """The lm_eval module, or one message saying how to install it."""
    try:
        import lm_eval
    except ImportError as e:
        raise UserError(
            "llmkit evaluate runs lm-evaluation-harness, which is not installed", INSTALL_HINT
        ) from e
    if not os.environ.get("LLMKIT_DEBUG"):  # its notices on defaults it fills in are noise
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return lm_eval


def shipped_task_names() -> list[str]:
    return sorted(path.stem for path in SHIPPED_TASKS.glob("*.yaml"))


def task_manager(include: list[Path], metadata: dict[str, Any], names: list[str]):
    """The tasks that `names` can be found among: llmkit's shipped ones and the user's
    folders of task YAMLs, and the harness's own unless those folders hold every name
    (indexing the harness's ~15,000 task files takes seconds). `metadata` reaches each task's
    dataset loader (the shipped ones read `local_dir`)."""
    require_harness()
    from lm_eval.tasks import TaskManager

    for folder in include:
        if not Path(folder).is_dir():
            raise UserError(f"--include {folder} is not a folder of task YAML files")
    paths = [str(SHIPPED_TASKS), *(str(folder) for folder in include)]
    local = TaskManager(include_path=paths, include_defaults=False, metadata=metadata)
    if all(name in local.all_tasks for name in names):
        return local
    return TaskManager(include_path=paths, metadata=metadata)


def check_task_names(manager, names: list[str]) -> None:
    """Every name a harness task, group or tag, before anything is loaded."""
    known = set(manager.all_tasks)
    for name in names:
        if name not in known:
            raise UserError(
                f"unknown lm-evaluation-harness task '{name}'{did_you_mean(name, known)}",
                f"llmkit's offline tasks: {', '.join(shipped_task_names())}; the harness's "
                "list: lm-eval list tasks; your own: --include DIR",
            )


def harness_model(model, tokenizer, *, batch_size: int, max_length: int | None, prefix_id: int):
    """The harness's HFLM around an already loaded model. HFLM takes the device from the
    model, and causal LM or encoder-decoder from its config's model type."""
    require_harness()
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size,
        max_length=max_length,
        prefix_token_id=prefix_id,
    )


@dataclass(frozen=True)
class TaskResult:
    task: str
    metrics: dict[str, float]  # "word_perplexity": 123.4 (the harness's filter name dropped)
    stderr: dict[str, float]  # metric → standard error, where the harness gives one
    num_fewshot: int | None
    samples: int | None  # documents scored (after --limit)
    version: Any
    higher_is_better: dict[str, bool]


def task_results(evaluated: dict[str, Any]) -> list[TaskResult]:
    """simple_evaluate's output, one entry per task (and group) it reports."""
    results = []
    for task, figures in evaluated["results"].items():
        metrics, stderr = {}, {}
        for key, value in figures.items():
            name, comma, _filter = key.partition(",")  # "acc,none": metric, filter
            if not comma or not isinstance(value, (int, float)):
                continue  # "alias", "name", "sample_len"
            if name.endswith("_stderr"):
                if isinstance(value, float) and value == value:  # "N/A" and NaN: none
                    stderr[name.removesuffix("_stderr")] = value
            else:
                metrics[name] = float(value)
        samples = evaluated.get("n-samples", {}).get(task, {}).get("effective")
        results.append(
            TaskResult(
                task,
                metrics,
                stderr,
                evaluated.get("n-shot", {}).get(task),
                samples,
                evaluated.get("versions", {}).get(task),
                evaluated.get("higher_is_better", {}).get(task, {}),
            )
        )
    return results


def run_harness(
    lm, manager, tasks: list[str], *, num_fewshot: int | None, limit: float | None
) -> list[TaskResult]:
    from lm_eval import simple_evaluate

    try:
        evaluated = simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=False,  # per-document records, which llmkit does not save
        )
    except ConnectionError as e:  # a hub task's data, offline
        raise UserError(
            f"a task's data is on the Hugging Face Hub, which cannot be reached: {e}",
            f"offline, use llmkit's local tasks ({', '.join(shipped_task_names())}) with "
            "--local-dir, a task YAML reading local files (--include DIR), or the datasets "
            "cache of a machine that ran the task online",
        ) from e
    return task_results(evaluated)

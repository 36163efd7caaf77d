"""Fine-tuning tasks: one folder per kind, and the registry of kinds.

A kind is a folder, `tasks/<kind>/`: its `__init__.py` declares the kind's `task.*` keys and
its registry entry (`KIND`), `data.py` how its data reads, `finetune.py` its head, encoding,
metrics and prediction files (`prepare`, returning a `PreparedTask`). Task names carry their
kind as a prefix: `glue/sst2`, `qa/squad`. The recipe schema, `finetune`, `llmkit recipes`
and the task table of docs/commands/finetune.md all read `KINDS`.
"""

from __future__ import annotations

from llmkit.errors import UserError, did_you_mean
from llmkit.tasks import clue, glue, ner, qa, seq2seq, sft
from llmkit.tasks.kind import TaskKeys, TaskKind

KINDS: dict[str, TaskKind] = {
    kind.name: kind for kind in (glue.KIND, clue.KIND, qa.KIND, ner.KIND, seq2seq.KIND, sft.KIND)
}


def task_names() -> list[str]:
    return [name for kind in KINDS.values() for name in kind.names]


def kind_of(task_name: str | None) -> TaskKind | None:
    """The kind a task name's prefix names (None for no name or an unknown prefix)."""
    if not isinstance(task_name, str):  # a recipe being validated may hold anything here
        return None
    return KINDS.get(task_name.split("/", 1)[0])


def keys_of(task_name: str | None) -> type[TaskKeys]:
    """The task.* keys a recipe with this task.name may set."""
    kind = kind_of(task_name)
    return kind.keys_of(task_name) if kind else TaskKeys


def owners_of(key: str) -> list[str]:
    """Which tasks read task.<key>: `qa/*` for a whole kind, or single task names."""
    owners = []
    for kind in KINDS.values():
        if key in kind.keys.model_fields:
            owners.append(f"{kind.name}/*")
        else:
            owners += [name for name, keys in kind.task_keys.items() if key in keys.model_fields]
    return owners


def check_task_name(task_name: str | None) -> TaskKind:
    """The kind of a known task name (what --dry-run can check without any data)."""
    if not task_name:
        raise UserError("the recipe sets no task.name", "e.g. --set task.name=glue/sst2")
    names = task_names()
    if task_name not in names:
        raise UserError(
            f"unknown task '{task_name}'{did_you_mean(task_name, names)}",
            f"tasks: {', '.join(names)}",
        )
    return kind_of(task_name)

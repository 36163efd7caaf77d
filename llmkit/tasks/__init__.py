"""Fine-tuning tasks: one folder per kind, and the registry of kinds.

A kind is a folder, `tasks/<kind>/`: its `__init__.py` declares the kind's `task.*` keys and
its registry entry (`KIND`), `data.py` how its data reads, `finetune.py` its head, encoding,
metrics and prediction files (`prepare`, returning a `PreparedTask`). Task names carry their
kind as a prefix: `glue/sst2`, `qa/squad`. The recipe schema, `finetune`, `llmkit recipes`
and the README's task table all read `KINDS`.
"""

from __future__ import annotations

from llmkit.errors import UserError, did_you_mean
from llmkit.tasks import glue, ner, qa, seq2seq, sft
from llmkit.tasks.kind import TaskKeys, TaskKind

KINDS: dict[str, TaskKind] = {
    kind.name: kind for kind in (glue.KIND, qa.KIND, ner.KIND, seq2seq.KIND, sft.KIND)
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


def describe_task(recipe) -> dict[str, str]:
    """What a finetune dry run checks and shows: the task is known, its kind and head, what
    the kind audits in its data (sft), and with model.lora the trainable parameters."""
    kind = check_task_name(recipe.task.name)
    shown = {"task": recipe.task.name, "kind": f"{kind.name}/*", "head": kind.head}
    if recipe.model.lora is not None:
        shown.update(lora_parameters(recipe, kind))
    return {**shown, **kind.audit(recipe)}


def lora_parameters(recipe, kind: TaskKind) -> dict[str, int]:
    """Trainable and total parameters of model.path with the head and LoRA adapters."""
    import transformers

    from llmkit.adapters import add_lora, check_quantization, parameter_counts
    from llmkit.models import load_with_head
    from llmkit.tasks.prepared import checkpoint_path

    check_quantization(recipe.model.lora)
    head = getattr(transformers, kind.head)
    model = load_with_head(checkpoint_path(recipe), head)
    return parameter_counts(add_lora(model, recipe.model.lora, kind.head))

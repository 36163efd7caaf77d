"""What a task kind does, as opposed to what it declares (`tasks/kind.py`): its
`tasks/<kind>/finetune.py`, reached through `finetuning_of(kind)`.

Light on purpose: a sweep asks a kind for its main metric without loading any model code
until a kind's module is imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Protocol

from llmkit.recipe import Recipe
from llmkit.tasks.kind import TaskKind

if TYPE_CHECKING:
    from llmkit.tasks.prepared import PreparedTask


class KindFinetuning(Protocol):
    """What every kind's `tasks/<kind>/finetune.py` provides. It may also define
    `audit(recipe) -> dict`: what a dry run reads of the data to show (sft does)."""

    def prepare(self, recipe: Recipe, *, eval_only: bool) -> PreparedTask:
        """The task loaded, encoded and given its model."""

    def main_metric(self, recipe: Recipe) -> str:
        """The metrics.json key that ranks this task's runs (sweeps search it by default)."""


def finetuning_of(kind: TaskKind) -> KindFinetuning:
    """The kind's `finetune.py`, imported when a run needs it: a kind's training code (TRL for
    sft, say) is loaded only by runs of that kind."""
    return import_module(f"llmkit.tasks.{kind.name}.finetune")

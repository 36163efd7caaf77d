"""What a recipe verb checks before it imports torch, transformers or datasets.

Those imports take seconds; a run that cannot start should not wait for them. So the CLI
checks the output folder (a finished run, files that are not a run, a bad --resume) and,
for a verb that reads a corpus, where `data.train` and `data.validation` are — the errors a
user most often makes — in a fraction of a second. The verb's function makes the same checks
again through the same functions (`Run.start`, `corpus_source`), so calling it directly,
as tests and scripts do, is just as safe.
"""

from __future__ import annotations

from typing import Any

from llmkit.data.sources import corpus_source
from llmkit.recipe import Recipe
from llmkit.rundir import Run


def preflight(recipe: Recipe, command: str, *, reads_corpus: bool, **run_dir_flags: Any) -> None:
    """`run_dir_flags`: Run.start's (output_dir, overwrite, resume, resumable)."""
    Run.start(recipe, command, **run_dir_flags)
    if reads_corpus:
        corpus_source(recipe.data, recipe.data.train, "train")
        if recipe.data.validation:
            corpus_source(recipe.data, recipe.data.validation, "validation")

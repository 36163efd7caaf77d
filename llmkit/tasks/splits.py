"""Where a task's splits come from: one policy for every kind.

For each split, in this order:
1. its own file: `task.train_file`, `task.validation_file` (GLUE: also `task.test_file`);
2. the local copy: `task.data_dir` (the task's folder, or a root of standard downloads that
   holds it), else `$LLMKIT_DATA_DIR/<the task's folder>` when that exists;
3. the hub (or `task.dataset`), unless the user pointed at any local file or folder: then a
   split without a file is absent, not fetched.
Training data and the first validation split are required (an error says where to put
them); other validation splits and test splits are optional.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from llmkit.data.sources import load_hub_split, load_source, local_copy_dir
from llmkit.errors import UserError
from llmkit.tasks.kind import TaskKeys

# Each split group's key: task.<group>_file serves the group's first split.
FILE_KEYS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}


def _unchanged(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
    return dataset


@dataclass(frozen=True)
class HubCopy:
    """A task's copy on the Hugging Face Hub, and how its rows become the task's rows."""

    repo: str
    config: str | None = None
    rows: Callable[[datasets.Dataset, str], datasets.Dataset] = _unchanged  # (rows, split)


@dataclass(frozen=True)
class SplitSource:
    """How one task's splits read."""

    keys: TaskKeys  # the recipe's task section
    read: Callable[[Path, str], datasets.Dataset]  # one local file of a split → its rows
    # split → the names its file has in a local copy (train: train.tsv, ...)
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    copy_folder: str | None = None  # a local copy's folder under $LLMKIT_DATA_DIR (glue/SST-2)
    hub: HubCopy | None = None

    @property
    def points_at_local_files(self) -> bool:
        keys = ("data_dir", *FILE_KEYS.values())
        return any(getattr(self.keys, key, None) for key in keys)


@dataclass(frozen=True)
class Splits:
    train: datasets.Dataset | None  # None when only evaluating
    validation: dict[str, datasets.Dataset]  # split name → rows; never empty
    test: dict[str, datasets.Dataset]

    @property
    def dev(self) -> datasets.Dataset:
        return next(iter(self.validation.values()))


def _group(split: str) -> str:
    return next(group for group in FILE_KEYS if split.startswith(group))


def load_split(source: SplitSource, split: str, *, first_of_group: bool = True):
    """One split's rows by the policy above, or None when it is not given anywhere."""
    task = source.keys.name
    file = getattr(source.keys, FILE_KEYS[_group(split)], None) if first_of_group else None
    if file:
        if not Path(file).exists():
            raise UserError(f"task file {file} does not exist")
        return source.read(Path(file), split)
    folder = None
    if source.copy_folder:
        folder = local_copy_dir(
            source.copy_folder, getattr(source.keys, "data_dir", None), key="task.data_dir"
        )
    if folder is not None:
        names = source.files.get(split, ())
        path = next((folder / name for name in names if (folder / name).is_file()), None)
        if path is None:
            if split == "train" or (split.startswith("validation") and first_of_group):
                raise UserError(
                    f"{folder} has no {' or '.join(names)} for {task}",
                    f"point task.data_dir at the task's folder (holding "
                    f"{', '.join(n[0] for n in source.files.values())}) or at a download "
                    f"root holding {Path(source.copy_folder).name}/",
                )
            return None
        return source.read(path, split)
    if source.points_at_local_files or source.hub is None:
        return None
    hub = source.hub
    dataset = load_hub_split(
        hub.repo, hub.config, split, what=f"{task} ({hub.repo})", how_to=_local_instead(source)
    )
    return hub.rows(dataset, split)


def _local_instead(source: SplitSource) -> str:
    """How to give the task's data from local files instead of the hub."""
    ways = "set task.train_file / task.validation_file to local files"
    if source.copy_folder:
        files = ", ".join(names[0] for names in source.files.values())
        ways += f", or task.data_dir to the task's folder ({files})"
        ways += f", or export LLMKIT_DATA_DIR=ROOT with ROOT/{source.copy_folder}/"
    return ways


def limit(dataset: datasets.Dataset | None, count: int | None) -> datasets.Dataset | None:
    """The first `count` rows (task.max_train_examples / max_eval_examples), for quick runs."""
    if not count or dataset is None:
        return dataset
    return dataset.select(range(min(count, len(dataset))))


def load_splits(
    source: SplitSource,
    *,
    eval_only: bool,
    validation: tuple[str, ...] = ("validation",),
    test: tuple[str, ...] = (),
) -> Splits:
    """The training split (unless only evaluating), the validation splits and the test
    splits, cut to task.max_train_examples / max_eval_examples."""
    keys = source.keys
    train = None
    if not eval_only:
        train = limit(load_split(source, "train"), keys.max_train_examples)
        if train is None:
            raise UserError(f"no training data for {keys.name}", _where(source, "train"))
    found = {
        split: limit(load_split(source, split, first_of_group=i == 0), keys.max_eval_examples)
        for i, split in enumerate(validation)
    }
    found = {split: data for split, data in found.items() if data is not None}
    if not found:
        raise UserError(f"no validation data for {keys.name}", _where(source, "validation"))
    tests = {
        split: load_split(source, split, first_of_group=i == 0) for i, split in enumerate(test)
    }
    return Splits(train, found, {split: data for split, data in tests.items() if data is not None})


def _where(source: SplitSource, group: str) -> str:
    fields = type(source.keys).model_fields
    ways = [f"task.{FILE_KEYS[group]}"]
    ways += ["task.data_dir"] if "data_dir" in fields else []
    ways += ["task.dataset online"] if "dataset" in fields else []
    return "set " + " or ".join(ways)


def files_or_hub(keys, rows: Callable[[datasets.Dataset, str], datasets.Dataset]) -> SplitSource:
    """Splits from local files of any format llmkit reads (task.train_file, ...) or from the hub
    dataset task.dataset (+ task.dataset_config), each turned into the task's rows by
    `rows(dataset, where)` (`where` names the file or the hub split, for messages)."""

    def read(path: Path, split: str) -> datasets.Dataset:
        dataset, resolved = load_source(str(path))
        return rows(dataset, resolved.description)

    def from_hub(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        return rows(dataset, f"{keys.dataset}:{split}")

    hub = HubCopy(keys.dataset, keys.dataset_config, from_hub) if keys.dataset else None
    return SplitSource(keys, read, hub=hub)

"""`llmkit recipes ls | show NAME | cp NAME DEST`: the shipped recipes, to read or start from.

Recipes are the YAML files in the package's recipes/ folder; `accelerate/<name>` names a
launch config or the SLURM template in recipes/accelerate/. Each file's first comment line
says what it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from llmkit.errors import UserError, did_you_mean
from llmkit.recipe import shipped_recipes_dir
from llmkit.tasks import KINDS

LAUNCH_FOLDER = "accelerate"


def shipped_files() -> dict[str, Path]:
    """name → file: `gpt2-tiny`, ..., then `accelerate/ddp`, ..., `accelerate/slurm.sbatch`."""
    folder = shipped_recipes_dir()
    files = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    for path in sorted((folder / LAUNCH_FOLDER).glob("*")):
        name = path.stem if path.suffix == ".yaml" else path.name
        files[f"{LAUNCH_FOLDER}/{name}"] = path
    return files


def description(path: Path) -> str:
    """A shipped file's opening comment, whole: its lines up to the first command line (an
    indented `#   llmkit ...`) or the first line that is not a comment."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#!"):  # a script's interpreter line
            continue
        text = line.removeprefix("#").strip()
        if not line.startswith("#") or not text or line.startswith("#  "):
            break
        lines.append(text)
    return " ".join(lines).removesuffix(":") + ("." if lines and lines[-1].endswith(":") else "")


def recipes_by_task() -> dict[str, list[str]]:
    """task.name → the shipped recipes that fine-tune it (read from the recipes themselves)."""
    runs: dict[str, list[str]] = {}
    for name, path in sorted(shipped_files().items()):
        if path.suffix == ".yaml" and not name.startswith(f"{LAUNCH_FOLDER}/"):
            task = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("task") or {}
            if task.get("name"):
                runs.setdefault(task["name"], []).append(name)
    return runs


def list_recipes() -> dict[str, dict[str, str]]:
    """The shipped files with what each is, and each fine-tuning task with its recipes (or a
    recipe of its kind with the task named)."""
    runs = recipes_by_task()
    tasks = {}
    for kind in KINDS.values():
        of_kind = [recipe for name in kind.names for recipe in runs.get(name, [])]
        for name in kind.names:
            how = ", ".join(runs.get(name, [])) or f"{of_kind[0]} --set task.name={name}"
            tasks[name] = f"{how}  ({kind.head})"
    return {
        "recipes": {name: description(path) for name, path in shipped_files().items()},
        "tasks": tasks,
    }


def recipe_text(name: str) -> str:
    return recipe_file(name).read_text(encoding="utf-8")


def recipe_file(name: str) -> Path:
    files = shipped_files()
    key = name.removesuffix(".yaml")
    if key not in files:
        raise UserError(
            f"no shipped recipe named '{name}'{did_you_mean(key, list(files))}",
            "llmkit recipes ls lists them",
        )
    return files[key]


def copy_recipe(name: str, destination: str | Path) -> Path:
    """Copy a shipped recipe to `destination` (a file, or a folder to put it in)."""
    source = recipe_file(name)
    target = Path(destination)
    if target.is_dir() or str(destination).endswith("/"):
        target = target / source.name
    if target.exists():
        raise UserError(f"{target} already exists", "remove it or give another destination")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target

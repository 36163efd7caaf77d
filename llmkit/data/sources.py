"""Data sources: turn a recipe's SRC string into a `datasets.Dataset`.

SRC is a local file, a folder (searched recursively) or a glob of files, each optionally
compressed (`.gz`, `.bz2`, `.zst`); a `save_to_disk` folder; a known name (`wikitext-2`,
`wikitext-103`, `glue/<task>`) resolved to the Hugging Face Hub or to a local copy; a hub
dataset repository (`owner/name`, e.g. `allenai/c4`); or `builtin` (the small corpus shipped
inside the package). Every way of failing that the user can cause ends in a `UserError` that
says what to do. Large corpora are read as streams (streams.py); this module decides only
where the rows are.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmkit.data.known import KNOWN_SOURCES, HubDataset, known_source
from llmkit.errors import UserError, did_you_mean
from llmkit.recipe import DataConfig
from llmkit.rundir import RECIPE_FILE

# datasets (a second of start-up) is imported by the functions that read rows, not here:
# resolving a source is part of the checks a run makes before any heavy import
# (preflight.py), so that a wrong path fails in a fraction of a second.
if TYPE_CHECKING:
    import datasets

# Raw text, one speech per record; not a split that any evaluation scores (NOTICE.md).
BUILTIN_CORPUS = Path(__file__).resolve().parent / "builtin" / "shakespeare.jsonl"

# File ending → (datasets builder, extra builder arguments).
LOCAL_FORMATS: dict[str, tuple[str, dict]] = {
    ".txt": ("text", {}),
    ".raw": ("text", {}),
    ".tokens": ("text", {}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
}

# Compressed files are named by their content's ending plus one of these (`a.jsonl.zst`).
COMPRESSIONS = (".gz", ".bz2", ".zst")
# `owner/name` of a hub dataset repository (checked only when no such local path exists).
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def file_format(path: Path) -> str | None:
    """The ending that names a file's format, compression ignored (`a.jsonl.gz` → `.jsonl`);
    None when llmkit cannot read it."""
    suffixes = path.suffixes
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    ending = suffixes[-1] if suffixes else ""
    return ending if ending in LOCAL_FORMATS else None


def compression_of(path: Path) -> str | None:
    return path.suffix if path.suffix in COMPRESSIONS else None


SUPPORTED = f"{', '.join(LOCAL_FORMATS)}, each optionally {'/'.join(COMPRESSIONS)}"

# A split as users name it → the words files use for it.
SPLIT_FILE_STEMS = {
    "train": ("train",),
    "validation": ("validation", "valid", "dev"),
    "test": ("test",),
}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ResolvedSource:
    """Where a SRC's rows come from; `fingerprint` changes whenever its contents may."""

    description: str
    files: tuple[Path, ...] = ()
    hub: HubDataset | None = None
    saved_dataset: Path | None = None

    @property
    def format(self) -> str | None:
        """The files' format ending (`.txt`, `.jsonl`, ...); None for hub and saved datasets."""
        return file_format(self.files[0]) if self.files else None

    @property
    def total_bytes(self) -> int | None:
        """Bytes on disk (compressed where compressed); None when not known in advance."""
        return sum(f.stat().st_size for f in self.files) if self.files else None

    @property
    def fingerprint(self) -> str:
        """Paths, sizes and modification times (no read of the contents); a hub dataset's
        repository, subset and split."""
        if self.hub is not None:
            key: object = [self.hub.repo, self.hub.config, self.description]
        else:
            paths = self.files or (self.saved_dataset,)
            key = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _data_files(candidates: list[Path], where: str) -> tuple[Path, ...]:
    """The readable data files among `candidates`, in path order, all of one format."""
    files = sorted(p for p in candidates if p.is_file() and file_format(p) is not None)
    if not files:
        raise UserError(f"{where} holds no data files", f"supported endings: {SUPPORTED}")
    builders = {LOCAL_FORMATS[file_format(p)][0] for p in files}
    if len(builders) > 1:
        raise UserError(f"{where} mixes formats ({', '.join(sorted(builders))})")
    return tuple(files)


def _files_in(folder: Path) -> tuple[Path, ...]:
    """Every data file under `folder`, subfolders included, hidden ones skipped, and so are
    llmkit's own run directories (a run written inside a corpus folder is not its data)."""
    runs = [run.parent for run in folder.rglob(RECIPE_FILE) if run.parent != folder]
    found = [
        p
        for p in folder.rglob("*")
        if not _is_hidden(p, folder) and not any(run in p.parents for run in runs)
    ]
    return _data_files(found, f"folder {folder}")


def _files_matching(pattern: str) -> tuple[Path, ...]:
    matches = [Path(p) for p in glob.glob(pattern, recursive=True)]
    if not matches:
        raise UserError(
            f"the pattern '{pattern}' matches no files",
            "check the path; `**` matches any number of folders",
        )
    return _data_files(matches, f"the pattern '{pattern}'")


def local_copy_dir(
    folder_name: str, local_dir: str | None, *, key: str = "data.local_dir"
) -> Path | None:
    """A known name's local copy: the folder the user configured (under `key`), else
    $LLMKIT_DATA_DIR/<folder_name> when it exists, else None (use the hub).

    The configured folder may also be a root of standard downloads: `glue_data/` holding
    `SST-2/`, or a root holding `glue/SST-2/`; the task's own folder inside is then used."""
    if local_dir:
        path = Path(local_dir)
        if not path.is_dir():
            raise UserError(f"{key} {local_dir} is not a folder")
        for inside in (path / folder_name, path / Path(folder_name).name):
            if inside.is_dir():
                return inside
        return path
    root = os.environ.get("LLMKIT_DATA_DIR")
    if root and (Path(root) / folder_name).is_dir():
        return Path(root) / folder_name
    return None


def _split_file(folder: Path, patterns: tuple[str, ...], split: str) -> Path:
    stems = SPLIT_FILE_STEMS.get(split, (split,))
    candidates = [folder / p.format(stem=s) for s in stems for p in patterns]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(
        f"the local copy {folder} has no '{split}' split",
        f"expected one of: {', '.join(c.name for c in candidates)}",
    )


def resolve_source(
    src: str,
    *,
    split: str = "train",
    local_dir: str | None = None,
    subset: str | None = None,
    local_key: str = "data.local_dir",
) -> ResolvedSource:
    """Decide where SRC's rows come from, without reading them yet. `subset` names the
    configuration of a hub repository (`en` for allenai/c4); `local_key` is how the caller
    names `local_dir` in messages."""
    if src == "builtin":
        return ResolvedSource("builtin (Tiny Shakespeare)", files=(BUILTIN_CORPUS,))
    known = known_source(src)
    if known is not None:
        folder_name, hub = known
        local = local_copy_dir(folder_name, local_dir, key=local_key)
        if local is not None:
            file = _split_file(local, hub.local_patterns, split)
            return ResolvedSource(f"{src} ({file})", files=(file,))
        return ResolvedSource(f"{src}:{split}", hub=hub)
    if glob.has_magic(src):
        return ResolvedSource(src, files=_files_matching(src))
    path = Path(src)
    if path.is_dir():
        if _is_saved_dataset(path):
            return ResolvedSource(str(path), saved_dataset=path)
        return ResolvedSource(str(path), files=_files_in(path))
    if path.is_file():
        if file_format(path) is None:
            raise UserError(
                f"data file {path} has an unsupported ending '{''.join(path.suffixes)}'",
                f"supported endings: {SUPPORTED}",
            )
        return ResolvedSource(str(path), files=(path,))
    if HUB_REPO.match(src) and file_format(path) is None:
        hub = HubDataset(src, subset, ())
        return ResolvedSource(f"{src}{f' ({subset})' if subset else ''}:{split}", hub=hub)
    names = ["builtin", *KNOWN_SOURCES, "glue/<task>", "<owner>/<hub dataset>"]
    raise UserError(
        f"data source '{src}' is neither an existing file or folder nor a known name"
        f"{did_you_mean(src, names)}",
        f"known names: {', '.join(names)}; or give a path to a file, folder or glob",
    )


def corpus_source(data: DataConfig, src: str, split: str) -> ResolvedSource:
    """Where a recipe's corpus (`data.train` or `data.validation`) is."""
    return resolve_source(src, split=split, local_dir=data.local_dir, subset=data.subset)


def load_files(
    files: tuple[Path, ...], *, streaming: bool = False
) -> datasets.Dataset | datasets.IterableDataset:
    """Local files through their datasets builder; `streaming` reads them as a stream (no
    Arrow copy in the datasets cache)."""
    import datasets

    builder, options = LOCAL_FORMATS[file_format(files[0])]
    try:
        return datasets.load_dataset(
            builder,
            data_files=[str(f) for f in files],
            split="train",
            streaming=streaming,
            **options,
        )
    except Exception as e:  # datasets wraps the real cause; find and name it
        raise explain_read_failure(files, e) from e


def _is_corrupt_compression(error: BaseException) -> bool:
    """gzip, bz2 and zstd's ways of saying a file is damaged or cut short."""
    if isinstance(error, EOFError | zlib.error | gzip.BadGzipFile):
        return True
    if type(error).__name__ == "ZstdError":
        return True
    return isinstance(error, OSError) and "invalid data stream" in str(error).lower()


def explain_read_failure(files: tuple[Path, ...], error: BaseException) -> BaseException:
    """datasets (and decompressors) wrap the real cause of a failed read; find it and say it
    plainly."""
    where = files[0] if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, UnicodeDecodeError):
            return UserError(
                f"{where} is not UTF-8 text (byte 0x{cause.object[cause.start]:02x} cannot be "
                "decoded): is it a binary file?",
                "convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or remove it",
            )
        if _is_corrupt_compression(cause):
            return UserError(
                f"{where} is corrupt or truncated ({type(cause).__name__}: {cause})",
                "download or compress it again; `gzip -t` / `zstd -t` / `bzip2 -t` test a file",
            )
        if type(cause).__name__ == "SchemaInferenceError":
            return UserError(f"{where} is empty", "give a file with at least one row of text")
        if type(cause).__module__.split(".")[0] in ("pyarrow", "pandas", "json"):
            return UserError(f"{where} could not be parsed: {cause}")
        cause = cause.__cause__ or cause.__context__
    return error


def load_hub(
    hub: HubDataset,
    split: str,
    src: str,
    *,
    streaming: bool = False,
    local_flag: str = "--set data.local_dir=DIR",
) -> datasets.Dataset | datasets.IterableDataset:
    """`local_flag` is how the calling command is told about a local copy (for the hint)."""
    import datasets

    known = known_source(src)
    how_to = (
        f"point at a local copy: {local_flag}, or export LLMKIT_DATA_DIR=ROOT "
        f"with ROOT/{known[0]}/ holding the split files"
        if known
        else "go online (unset HF_HUB_OFFLINE), or download its files and give their folder "
        "or a glob"
    )
    try:
        return datasets.load_dataset(hub.repo, hub.config, split=split, streaming=streaming)
    except ValueError as e:
        if "split" in str(e).lower():
            raise UserError(f"{src} has no split '{split}': {e}") from e
        raise
    except Exception as e:
        if hub_offline() or isinstance(e, ConnectionError) or "offline" in str(e).lower():
            raise UserError(
                f"'{src}' is a Hugging Face Hub dataset ({hub.repo}) and the hub cannot be "
                "reached (offline)",
                how_to,
            ) from e
        if type(e).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError"):
            raise UserError(
                f"'{src}' is neither a local path nor a dataset on the Hugging Face Hub",
                "check the spelling, or give a path to a file, folder or glob",
            ) from e
        raise


def load_saved(folder: Path, split: str) -> datasets.Dataset:
    """A `save_to_disk` folder, memory-mapped; a DatasetDict gives its `split`."""
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise UserError(f"{folder} has no split '{split}'{did_you_mean(split, loaded)}")
        loaded = loaded[split]
    return loaded


def load_hub_split(
    repo: str, config: str | None, split: str, *, what: str, how_to: str
) -> datasets.Dataset:
    """One split of a hub dataset, or one UserError saying `what` cannot be fetched offline
    and `how_to` point at a local copy instead."""
    import datasets

    try:
        return datasets.load_dataset(repo, config, split=split)
    except Exception as e:
        if hub_offline() or isinstance(e, ConnectionError):
            raise UserError(
                f"{what} is on the Hugging Face Hub, which cannot be reached (offline)", how_to
            ) from e
        raise


def load_source(
    src: str,
    *,
    split: str = "train",
    local_dir: str | None = None,
    local_key: str = "data.local_dir",
) -> tuple[datasets.Dataset, ResolvedSource]:
    """Read SRC's rows as a `datasets.Dataset` (every column kept), for sources small enough
    to prepare whole (evaluation and fine-tuning sets); corpora are streamed (streams.py).
    `local_key` is how the calling command takes `local_dir`: a recipe key or a flag."""
    resolved = resolve_source(src, split=split, local_dir=local_dir, local_key=local_key)
    if resolved.hub is not None:
        flag = f"{local_key} DIR" if local_key.startswith("-") else f"--set {local_key}=DIR"
        dataset = load_hub(resolved.hub, split, src, local_flag=flag)
    elif resolved.saved_dataset is not None:
        dataset = load_saved(resolved.saved_dataset, split)
    else:
        dataset = load_files(resolved.files)
    if len(dataset) == 0:
        raise UserError(f"data source {resolved.description} is empty")
    return dataset, resolved


def select_text(dataset: datasets.Dataset, text_column: str, *, where: str) -> datasets.Dataset:
    """Keep only the text column, named `text`, and check that it holds strings."""
    if text_column not in dataset.column_names:
        raise UserError(
            f"{where} has no column '{text_column}'"
            f"{did_you_mean(text_column, dataset.column_names)}",
            f"its columns: {', '.join(dataset.column_names)}; set data.text_column",
        )
    feature = dataset.features[text_column]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise UserError(
            f"column '{text_column}' of {where} holds {feature}, not text",
            "set data.text_column to a column of strings",
        )
    dataset = dataset.select_columns([text_column])
    if text_column != "text":
        dataset = dataset.rename_column(text_column, "text")
    return dataset

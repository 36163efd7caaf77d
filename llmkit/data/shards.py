"""Packed blocks on disk: Arrow shards written as they are produced, and the cache entries
that hold them.

A finished folder has `save_to_disk`'s layout (`data-0000i-of-0000N.arrow`, `state.json`,
`dataset_info.json`), so `datasets.load_from_disk` memory-maps it: no process loads the
corpus, and every process of a multi-process run maps the same files. Shards are Arrow IPC
streams, the format `save_to_disk` itself writes.

A cache entry is built in a staging folder and renamed into place once complete (its stats
file written last), so a run killed at any point leaves nothing a later run takes as done;
staging folders of processes that are gone are removed by the next run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import pyarrow as pa

from llmkit.errors import UserError

STATS_FILE = "llmkit_stats.json"


class ShardWriter:
    """Tables of one schema, appended to Arrow shards of about `shard_bytes` each."""

    def __init__(self, folder: Path, features: datasets.Features, shard_bytes: int) -> None:
        self.folder, self.features, self.shard_bytes = folder, features, shard_bytes
        self.schema = features.arrow_schema
        self.shards: list[Path] = []
        self.rows = 0
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._shard_size = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        """Append `table`, split across shards where one fills up."""
        table = table.cast(self.schema)
        row_bytes = max(1, table.nbytes // max(1, table.num_rows))
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._shard_size >= self.shard_bytes:
                self._open_shard()
            room = max(1, (self.shard_bytes - self._shard_size) // row_bytes)
            piece = table.slice(start, room)
            self._writer.write_table(piece)
            self._shard_size += piece.num_rows * row_bytes
            start += piece.num_rows
        self.rows += table.num_rows

    def _open_shard(self) -> None:
        self._close_shard()
        path = self.folder / f"shard-{len(self.shards):05d}.arrow"
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self.shards.append(path)
        self._shard_size = 0

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def finish(self) -> None:
        """Name the shards as save_to_disk does and write the files load_from_disk reads."""
        self._close_shard()
        names = []
        for index, path in enumerate(self.shards):
            name = f"data-{index:05d}-of-{len(self.shards):05d}.arrow"
            path.rename(self.folder / name)
            names.append({"filename": name})
        state = {
            "_data_files": names,
            "_fingerprint": self.folder.name,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (self.folder / "state.json").write_text(json.dumps(state, indent=2))
        info = {"features": self.features.to_dict()}
        (self.folder / "dataset_info.json").write_text(json.dumps(info, indent=2))


def _staging_name(fingerprint: str) -> str:
    return f".{fingerprint}.tmp-{socket.gethostname()}-{os.getpid()}"


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def remove_abandoned(root: Path) -> None:
    """Staging folders left by killed runs on this machine (another machine's are left alone:
    their process ids mean nothing here)."""
    if not root.is_dir():
        return
    host = socket.gethostname()
    for folder in root.glob(".*.tmp-*"):
        owner = folder.name.rsplit(".tmp-", 1)[1]
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and _process_is_gone(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def new_entry(root: Path, fingerprint: str, *, what: str) -> Iterator[Path]:
    """A staging folder to build cache entry `fingerprint` in; renamed to root/fingerprint
    when the block ends normally, removed when it does not. `what` names the entry in errors."""
    final = root / fingerprint
    remove_abandoned(root)
    staging = root / _staging_name(fingerprint)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        yield staging
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"the disk is full: {what} could not be written under {root}",
                "free space there, or set data.cache_dir (or $LLMKIT_CACHE) to a larger disk",
            ) from e
        raise
    if final.exists() and not (final / STATS_FILE).is_file():
        shutil.rmtree(final, ignore_errors=True)  # left by a run killed while replacing it
    try:
        staging.rename(final)
    except OSError:  # another process finished the same entry first
        shutil.rmtree(staging, ignore_errors=True)

"""Read a corpus as a stream of row batches, so memory does not grow with its size.

Text and JSON-lines files (plain, `.gz`, `.bz2` or `.zst`) and parquet files are read here
a block at a time, once, with nothing written to disk: the datasets `text`/`json` builders
would first write a full Arrow copy of the corpus into their cache. Their rows are the
builders' rows (a text file's lines after universal-newline translation, "\\n" removed; a
JSON line's field). Everything else is read through datasets itself: a saved dataset
(memory-mapped), CSV/TSV/JSON files (as an `IterableDataset`), a hub dataset (streamed when
`data.streaming`, else downloaded and prepared by datasets), and any source at all when
`data.streaming` is set.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import datasets
import pyarrow.parquet as pq

from llmkit.data.sources import (
    ResolvedSource,
    compression_of,
    explain_read_failure,
    load_files,
    load_hub,
    load_saved,
)
from llmkit.errors import UserError, did_you_mean

READ_CHARS = 8 << 20  # characters decoded per read of a text file
BATCH_ROWS = 10_000  # rows per batch from datasets and parquet
# A line longer than this cannot be one row of text: it would hold its whole length in
# memory (and the encoder several times more). With data.clean.max_chars set, lines far
# longer than it are skipped as they are read instead.
MAX_LINE_CHARS = 64 << 20


@dataclass
class ReadProgress:
    """How far a stream has got: bytes of its files read (compressed bytes where compressed),
    or rows where the source has no files."""

    done: int = 0
    total: int | None = None
    unit: str = "bytes"
    skipped_long: int = 0  # lines skipped while reading (longer than max_chars allows)
    file_start: int = 0  # bytes of the files before the one being read


@dataclass(frozen=True)
class LineLimit:
    chars: int  # the longest line held whole
    skip: bool  # skip longer lines (data.clean.max_chars would drop them), else an error


@dataclass
class RowStream:
    """A source's text rows, batch by batch, read once as the batches are taken."""

    source: ResolvedSource
    batches: Iterator[list[str]]
    progress: ReadProgress


def open_rows(
    source: ResolvedSource,
    text_column: str,
    *,
    split: str,
    src: str,
    streaming: bool = False,
    max_chars: int | None = None,
) -> RowStream:
    """The rows of `source`'s `text_column` as a stream of batches."""
    files = source.files
    progress = ReadProgress(total=source.total_bytes)
    if files and not streaming and source.format in (".txt", ".raw", ".tokens", ".jsonl"):
        # With max_chars, a line four times longer cannot survive cleaning (normalisation
        # shrinks no text that much): it is skipped unread instead of held whole.
        limit = LineLimit(
            MAX_LINE_CHARS if max_chars is None else min(MAX_LINE_CHARS, 4 * max_chars),
            skip=max_chars is not None,
        )
        read = _jsonl_rows if source.format == ".jsonl" else _text_rows
        batches = _each_file(files, progress, lambda f: read(f, text_column, limit, progress))
    elif files and not streaming and source.format == ".parquet":
        batches = _each_file(files, progress, lambda f: _parquet_rows(f, text_column, progress))
    else:
        progress.total, progress.unit = None, "rows"
        dataset = _dataset_for(source, split=split, src=src, streaming=streaming)
        if isinstance(dataset, datasets.Dataset):
            progress.total = len(dataset)
        batches = _dataset_rows(dataset, text_column, source, progress)
    return RowStream(source, batches, progress)


def _dataset_for(source: ResolvedSource, *, split: str, src: str, streaming: bool):
    if source.hub is not None:
        return load_hub(source.hub, split, src, streaming=streaming)
    if source.saved_dataset is not None:
        saved = load_saved(source.saved_dataset, split)
        return saved.to_iterable_dataset() if streaming else saved
    return load_files(source.files, streaming=True)


def _each_file(
    files: tuple[Path, ...], progress: ReadProgress, read: Callable[[Path], Iterator[list[str]]]
) -> Iterator[list[str]]:
    for file in files:
        progress.file_start = progress.done
        try:
            yield from read(file)
        except UserError:
            raise
        except Exception as e:  # decoding and decompression failures, explained when known
            explained = explain_read_failure((file,), e)
            if explained is e:
                raise
            raise explained from e
        progress.done = progress.file_start + file.stat().st_size


@contextmanager
def _open_binary(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(decompressed stream, the file itself: its position is the progress)."""
    with open(path, "rb") as raw:
        compression = compression_of(path)
        if compression == ".gz":
            stream: BinaryIO = gzip.GzipFile(fileobj=raw)
        elif compression == ".bz2":
            stream = bz2.BZ2File(raw)
        elif compression == ".zst":
            import zstandard  # only a .zst corpus needs it

            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            stream = raw
        try:
            yield stream, raw
        finally:
            if stream is not raw:
                stream.close()


def _lines(path: Path, limit: LineLimit, progress: ReadProgress) -> Iterator[list[str]]:
    """A text file's lines in batches, as the `text` builder splits them: universal newlines
    become "\\n", which is then split on and removed. A line longer than the limit is
    skipped or is an error, as the limit says."""
    with _open_binary(path) as (binary, raw):
        text = io.TextIOWrapper(binary, encoding="utf-8", newline=None)
        carry, skipping, lines_before = "", False, 0
        while block := text.read(READ_CHARS):
            if "\x00" in block:
                raise UserError(
                    f"{path} holds NUL bytes: it is a binary file, not text",
                    "remove it from the corpus folder (or narrow the glob)",
                )
            if skipping:
                cut = block.find("\n")
                if cut < 0:
                    continue
                block, skipping = block[cut + 1 :], False
            lines = (carry + block).split("\n")
            carry = lines.pop()
            if len(carry) > limit.chars:
                if not limit.skip:
                    raise UserError(
                        f"line {lines_before + len(lines) + 1:,} of {path} is longer than "
                        f"{limit.chars:,} characters: one row cannot hold it",
                        "set data.clean.max_chars to drop such lines as they are read",
                    )
                progress.skipped_long += 1
                carry, skipping = "", True
            lines_before += len(lines)
            progress.done = progress.file_start + raw.tell()
            if lines:
                yield lines
        if carry:
            yield [carry]


def _text_rows(
    path: Path, text_column: str, limit: LineLimit, progress: ReadProgress
) -> Iterator[list[str]]:
    if text_column != "text":
        raise UserError(
            f"{path} is plain text: its rows have no column '{text_column}'",
            "leave data.text_column at `text` for .txt files",
        )
    yield from _lines(path, limit, progress)


def _jsonl_rows(
    path: Path, text_column: str, limit: LineLimit, progress: ReadProgress
) -> Iterator[list[str]]:
    line_number = 0
    for lines in _lines(path, limit, progress):
        rows = []
        for line in lines:
            line_number += 1
            if line.strip():
                where = f"line {line_number:,} of {path}"
                rows.append(_text_field(json_record(line, where), text_column, where))
        yield rows


def json_record(line: str, where: str) -> Any:
    """One line of a JSON-lines file, or one error saying where it is not JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where} is not JSON: {e}") from e


def _text_field(record: object, text_column: str, where: str) -> str:
    if not isinstance(record, dict) or text_column not in record:
        columns = list(record) if isinstance(record, dict) else []
        raise UserError(
            f"{where} has no column '{text_column}'{did_you_mean(text_column, columns)}",
            f"its fields: {', '.join(columns) or '(not an object)'}; set data.text_column",
        )
    value = record[text_column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(
            f"field '{text_column}' of {where} holds {type(value).__name__}, not text",
            "set data.text_column to a field of strings",
        )
    return value


def _parquet_rows(path: Path, text_column: str, progress: ReadProgress) -> Iterator[list[str]]:
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    if text_column not in names:
        raise UserError(
            f"{path} has no column '{text_column}'{did_you_mean(text_column, names)}",
            f"its columns: {', '.join(names)}; set data.text_column",
        )
    column_type = file.schema_arrow.field(text_column).type
    if str(column_type) not in ("string", "large_string", "string_view"):
        raise UserError(
            f"column '{text_column}' of {path} holds {column_type}, not text",
            "set data.text_column to a column of strings",
        )
    size, rows = path.stat().st_size, max(1, file.metadata.num_rows)
    read = 0
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=[text_column]):
        read += batch.num_rows
        progress.done = progress.file_start + size * read // rows
        yield [row or "" for row in batch.column(0).to_pylist()]


def _dataset_rows(
    dataset: datasets.Dataset | datasets.IterableDataset,
    text_column: str,
    source: ResolvedSource,
    progress: ReadProgress,
) -> Iterator[list[str]]:
    where = source.description
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise UserError(
            f"{where} has no column '{text_column}'{did_you_mean(text_column, columns)}",
            f"its columns: {', '.join(columns)}; set data.text_column",
        )
    try:
        for batch in dataset.select_columns([text_column]).iter(batch_size=BATCH_ROWS):
            rows = batch.get(text_column)
            if rows is None:
                raise UserError(f"{where} has no column '{text_column}'; set data.text_column")
            if rows and not all(row is None or isinstance(row, str) for row in rows):
                raise UserError(
                    f"column '{text_column}' of {where} holds {type(rows[0]).__name__}, not text",
                    "set data.text_column to a column of strings",
                )
            progress.done += len(rows)
            yield [row or "" for row in rows]
    except UserError:
        raise
    except Exception as e:
        explained = explain_read_failure(source.files or (Path(where),), e)
        if explained is e:
            raise
        raise explained from e

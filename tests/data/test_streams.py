"""Large-corpus inputs: every form of a source gives the same blocks, bad inputs end in one
clear message, and no interrupted run leaves a cache entry that looks complete."""

import bz2
import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import datasets
import pytest
import zstandard
from helpers import read_rows

from llmkit.data import shards, streams
from llmkit.data.corpus import packed_blocks
from llmkit.errors import UserError
from llmkit.recipe import DataConfig, TokenizerConfig
from llmkit.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def lines(wikitext_valid):
    return wikitext_valid.read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture(scope="module")
def tokenizer(builtin_rows):
    batches = (builtin_rows[i : i + 2000] for i in range(0, len(builtin_rows), 2000))
    return train_tokenizer(batches, TokenizerConfig(vocab_size=800))


def write_text(path, lines, opener=open):
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


def zst_open(path, mode, encoding):
    return zstandard.open(path, mode, encoding=encoding)


def write_jsonl(path, lines, opener=open):
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps({"id": i, "text": line}) + "\n" for i, line in enumerate(lines)))
    return str(path)


def thirds(lines):
    n = len(lines) // 3
    return lines[:n], lines[n : 2 * n], lines[2 * n :]


def build(form, root, lines):
    """A source of the same rows in `form`; (SRC, extra data settings)."""
    if form == "txt.gz":
        return write_text(root / "c.txt.gz", lines, gzip.open), {}
    if form == "txt.bz2":
        return write_text(root / "c.txt.bz2", lines, bz2.open), {}
    if form == "txt.zst":
        return write_text(root / "c.txt.zst", lines, zst_open), {}
    if form == "folder":
        for i, part in enumerate(thirds(lines)):
            write_text(root / "f" / ("sub" if i == 2 else "") / f"p{i}.txt", part)
        (root / "f" / "README.md").write_text("not data: skipped")
        return str(root / "f"), {}
    if form == "glob":
        for i, part in enumerate(thirds(lines)):
            write_text(root / "g" / f"shard-{i}.txt.gz", part, gzip.open)
        return str(root / "g" / "shard-*.txt.gz"), {}
    if form == "jsonl":
        return write_jsonl(root / "c.jsonl", lines), {}
    if form == "jsonl.zst shards":
        for i, part in enumerate(thirds(lines)):
            write_jsonl(root / "j" / f"{i:03d}.jsonl.zst", part, zst_open)
        return str(root / "j"), {}
    if form == "parquet shards":
        for i, part in enumerate(thirds(lines)):
            (root / "pq").mkdir(exist_ok=True)
            datasets.Dataset.from_dict({"body": part}).to_parquet(str(root / "pq" / f"{i}.parquet"))
        return str(root / "pq"), {"text_column": "body"}
    if form == "streaming txt":
        return write_text(root / "s.txt", lines), {"streaming": True}
    if form == "streaming jsonl.gz":
        return write_jsonl(root / "s.jsonl.gz", lines, gzip.open), {"streaming": True}
    raise AssertionError(form)


FORMS = [
    "txt.gz",
    "txt.bz2",
    "txt.zst",
    "folder",
    "glob",
    "jsonl",
    "jsonl.zst shards",
    "parquet shards",
    "streaming txt",
    "streaming jsonl.gz",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_a_source_gives_the_plain_files_blocks(form, tmp_path, lines, tokenizer):
    plain = write_text(tmp_path / "plain.txt", lines)
    expected = packed_blocks(DataConfig(seq_len=64), plain, tokenizer, "clm", split="train")
    src, settings = build(form, tmp_path, lines)
    packed = packed_blocks(DataConfig(seq_len=64, **settings), src, tokenizer, "clm", split="train")
    assert not packed.reused and packed.blocks["input_ids"] == expected.blocks["input_ids"]
    assert packed.stats.tokens == expected.stats.tokens
    assert packed.cleaning.as_dict() == expected.cleaning.as_dict()


def test_lines_are_the_text_builders_rows(tmp_path, monkeypatch):
    text = "a\r\nb\rc\n\n  \nd\u2028e\x85f\r\n\r\nlast without newline"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    builder = datasets.load_dataset("text", data_files=str(path), split="train")["text"]
    monkeypatch.setattr(streams, "READ_CHARS", 3)  # lines and "\r\n" cut across reads
    assert read_rows(str(path), clean={"min_chars": 0}) == builder


def test_overlong_lines_are_an_error_or_dropped_by_max_chars(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "READ_CHARS", 64)
    monkeypatch.setattr(streams, "MAX_LINE_CHARS", 1_000)
    path = tmp_path / "runaway.txt"
    path.write_text("first line\n" + "x" * 5_000 + "\nafter it\n")
    with pytest.raises(UserError, match="line 2 of .* is longer than 1,000") as caught:
        read_rows(str(path))
    assert "data.clean.max_chars" in caught.value.hint
    assert read_rows(str(path), clean={"max_chars": 100}) == ["first line", "after it"]
    tokenizer = train_tokenizer(
        iter([["first line after it"] * 50]), TokenizerConfig(vocab_size=70)
    )
    packed = packed_blocks(
        DataConfig(seq_len=8, clean={"max_chars": 100}), str(path), tokenizer, "clm", split="train"
    )
    assert (packed.cleaning.rows_in, packed.cleaning.dropped_long) == (3, 1)


def corrupt_sources(root, lines):
    good = gzip.compress("".join(line + "\n" for line in lines[:2000]).encode())
    (root / "truncated.txt.gz").write_bytes(good[: len(good) // 2])
    (root / "garbage.txt.gz").write_bytes(b"this is not gzip at all" * 100)
    (root / "garbage.txt.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\xff" * 300)
    (root / "garbage.txt.bz2").write_bytes(b"BZh9" + b"\x00\x01" * 300)
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 10)
    (root / "folder").mkdir()
    (root / "folder" / "a.txt").write_text("fine text\n" * 10)
    (root / "folder" / "b.txt").write_bytes(b"\x7fELF\x00\x00\x00" * 50)
    (root / "no-text.jsonl").write_text('{"id": 1, "body": "x"}\n')
    (root / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n')


BAD = [
    ("missing-*.txt", "matches no files"),
    ("truncated.txt.gz", "corrupt or truncated"),
    ("garbage.txt.gz", "corrupt or truncated"),
    ("garbage.txt.zst", "corrupt or truncated"),
    ("garbage.txt.bz2", "corrupt or truncated"),
    ("latin1.txt", "not UTF-8 text"),
    ("folder", "b.txt holds NUL bytes: it is a binary file"),
    ("no-text.jsonl", "has no column 'text'"),
    ("broken.jsonl", "line 2 of .* is not JSON"),
]


@pytest.mark.parametrize(("name", "message"), BAD)
def test_bad_inputs_say_what_is_wrong_and_leave_no_cache_entry(
    name, message, tmp_path, lines, tokenizer
):
    corrupt_sources(tmp_path, lines)
    cache = tmp_path / "cache"
    data = DataConfig(seq_len=64, cache_dir=str(cache))
    with pytest.raises(UserError, match=message):
        packed_blocks(data, str(tmp_path / name), tokenizer, "clm", split="train")
    assert not (cache / "blocks").exists() or not list((cache / "blocks").iterdir())


def test_a_full_disk_is_one_message_and_no_partial_entry(tmp_path, lines, tokenizer, monkeypatch):
    src = write_text(tmp_path / "c.txt", lines)
    real_write = shards.ShardWriter.write

    def fill_up(self, table):
        if self.rows:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, table)

    monkeypatch.setattr(shards.ShardWriter, "write", fill_up)
    data = DataConfig(seq_len=64, cache_dir=str(tmp_path / "cache"), shard_mb=0.01)
    from llmkit.data import packing

    monkeypatch.setattr(packing, "CHUNK_CHARS", 50_000)
    with pytest.raises(UserError, match="disk is full") as caught:
        packed_blocks(data, src, tokenizer, "clm", split="train")
    assert "data.cache_dir" in caught.value.hint
    assert list((tmp_path / "cache" / "blocks").iterdir()) == []


def test_ctrl_c_while_packing_leaves_no_entry(tmp_path, lines, tokenizer, monkeypatch):
    src = write_text(tmp_path / "c.txt", lines)
    monkeypatch.setattr(streams, "READ_CHARS", 100_000)

    def interrupted(*args, **kwargs):
        yield lines[:1000]
        raise KeyboardInterrupt

    real_lines = streams._lines
    monkeypatch.setattr(streams, "_lines", interrupted)
    data = DataConfig(seq_len=64, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(KeyboardInterrupt):
        packed_blocks(data, src, tokenizer, "clm", split="train")
    assert list((tmp_path / "cache" / "blocks").iterdir()) == []
    monkeypatch.setattr(streams, "_lines", real_lines)
    assert not packed_blocks(data, src, tokenizer, "clm", split="train").reused


PACK_SLOWLY = textwrap.dedent(
    """
    import sys
    from llmkit.data import packing
    from llmkit.data.corpus import packed_blocks
    from llmkit.recipe import DataConfig
    from llmkit.tokenizer import load_tokenizer

    packing.CHUNK_CHARS = 20_000
    real = packing._encode_texts

    def slow(texts):
        import time
        time.sleep(0.2)
        return real(texts)

    packing._encode_texts = slow
    data = DataConfig(seq_len=64, cache_dir=sys.argv[1], shard_mb=0.005, num_proc=1)
    packed_blocks(data, sys.argv[2], load_tokenizer(sys.argv[3]), "clm", split="train")
    """
)


def test_a_killed_run_leaves_nothing_a_later_run_takes_as_complete(tmp_path, lines, tokenizer):
    src = write_text(tmp_path / "c.txt", lines)
    tokenizer.save_pretrained(tmp_path / "tok")
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", PACK_SLOWLY, str(cache), src, str(tmp_path / "tok")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.monotonic() + 120
    staging = []
    while time.monotonic() < deadline and len(staging) < 3:
        staging = list((cache / "blocks").glob(".*.tmp-*/shard-*.arrow"))
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert len(staging) >= 3, "the child never wrote shards"
    assert [p.name for p in (cache / "blocks").iterdir() if not p.name.startswith(".")] == []
    data = DataConfig(seq_len=64, cache_dir=str(cache))
    packed = packed_blocks(data, src, tokenizer, "clm", split="train")
    assert not packed.reused and packed.stats.blocks > 0
    assert [p.name for p in (cache / "blocks").iterdir()] == [packed.path.rsplit("/", 1)[1]]


def test_a_hub_dataset_offline_says_so_and_how_to_use_local_files():
    with pytest.raises(UserError) as caught:
        read_rows("HuggingFaceFW/fineweb", streaming=True, subset="sample-10BT")
    assert "offline" in caught.value.message and "HuggingFaceFW/fineweb" in caught.value.message
    assert "glob" in caught.value.hint

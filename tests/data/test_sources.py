import json

import datasets
import pytest

from llmkit.data.sources import load_source, resolve_source, select_text
from llmkit.errors import UserError

ROWS = ["The first line .", "Une deuxième ligne", "第三行"]


def write_all_formats(folder):
    (folder / "a.txt").write_text("\n".join(ROWS) + "\n", encoding="utf-8")
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in ROWS))
    (folder / "a.json").write_text(json.dumps([{"text": r} for r in ROWS]))
    (folder / "a.csv").write_text("text,label\n" + "".join(f'"{r}",1\n' for r in ROWS))
    (folder / "a.tsv").write_text("text\tlabel\n" + "".join(f"{r}\t1\n" for r in ROWS))
    datasets.Dataset.from_dict({"text": ROWS}).to_parquet(str(folder / "a.parquet"))


@pytest.mark.parametrize("ending", [".txt", ".jsonl", ".json", ".csv", ".tsv", ".parquet"])
def test_local_files_of_every_format(tmp_path, ending):
    write_all_formats(tmp_path)
    dataset, source = load_source(str(tmp_path / f"a{ending}"))
    assert select_text(dataset, "text", where=source.description)["text"] == ROWS


def test_a_folder_of_files_is_one_corpus(tmp_path):
    for i, row in enumerate(ROWS):
        (tmp_path / f"part{i}.txt").write_text(row + "\n")
    dataset, _ = load_source(str(tmp_path))
    assert sorted(dataset["text"]) == sorted(ROWS)


def test_a_run_written_inside_a_corpus_folder_is_not_read_as_its_data(tmp_path):
    """`llmkit tokenize --set data.train=corpus/ -o corpus/tok`: the run's JSON files are not
    text of the corpus, and the next run on the folder reads the text files alone."""
    for i, row in enumerate(ROWS):
        (tmp_path / f"part{i}.txt").write_text(row + "\n")
    run = tmp_path / "tok"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: tok\n")
    (run / "tokenizer.json").write_text("{}")
    (run / "notes.txt").write_text("a run's own text file\n")
    dataset, source = load_source(str(tmp_path))
    assert sorted(dataset["text"]) == sorted(ROWS)
    assert all(run not in path.parents for path in source.files)


def test_a_folder_mixing_formats_is_refused(tmp_path):
    write_all_formats(tmp_path)
    with pytest.raises(UserError, match="mixes formats"):
        load_source(str(tmp_path))


def test_a_saved_dataset_folder_loads(tmp_path):
    datasets.Dataset.from_dict({"text": ROWS}).save_to_disk(str(tmp_path / "saved"))
    dataset, source = load_source(str(tmp_path / "saved"))
    assert dataset["text"] == ROWS and source.saved_dataset is not None


def test_builtin_is_raw_shakespeare_one_speech_per_record():
    from llmkit.data.sources import BUILTIN_CORPUS

    dataset, source = load_source("builtin")
    assert len(dataset) == 7222 and "builtin" in source.description
    assert dataset[0]["text"] == "First Citizen:\nBefore we proceed any further, hear me speak."
    text = "\n\n".join(dataset["text"])
    assert "<unk>" not in text and " @-@ " not in text  # raw, not WikiText's tokenized copy
    assert BUILTIN_CORPUS.stat().st_size < 2_000_000


def test_known_name_offline_says_how_to_use_a_local_copy():
    with pytest.raises(UserError) as caught:
        load_source("wikitext-2", split="test")
    assert "offline" in caught.value.message and "data.local_dir" in caught.value.hint


def test_known_name_resolves_to_a_local_copy(tmp_path, monkeypatch):
    copy = tmp_path / "wikitext-2"
    copy.mkdir()
    (copy / "test.txt").write_text(" = Title = \n text .\n")
    (copy / "valid.txt").write_text(" other .\n")
    dataset, _ = load_source("wikitext-2", split="test", local_dir=str(copy))
    assert dataset["text"] == [" = Title = ", " text ."]
    monkeypatch.setenv("LLMKIT_DATA_DIR", str(tmp_path))
    dataset, _ = load_source("wikitext-2", split="validation")
    assert dataset["text"] == [" other ."]
    with pytest.raises(UserError, match="has no 'train' split"):
        load_source("wikitext-2", split="train")


def test_glue_names_use_the_standard_folder_layout(shared_data, monkeypatch):
    monkeypatch.setenv("LLMKIT_DATA_DIR", str(shared_data("glue").parent))
    dataset, source = load_source("glue/sst2", split="validation")
    assert len(dataset) == 872 and "SST-2" in source.description
    with pytest.raises(UserError, match="did you mean 'sst2'"):
        resolve_source("glue/sst-2")


def test_the_fingerprint_follows_the_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\n")
    before = resolve_source(str(path)).fingerprint
    path.write_text("one two\n")
    assert resolve_source(str(path)).fingerprint != before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"abc\xff\xfe\x00def\n", "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
    ],
)
def test_unreadable_files_are_user_errors(tmp_path, content, expected):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=expected):
        load_source(str(path))


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(UserError, match="neither an existing file"):
        load_source(str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="did you mean 'wikitext-2'"):
        load_source("wikitext2")
    (tmp_path / "a.docx").write_text("x")
    with pytest.raises(UserError, match="unsupported ending"):
        load_source(str(tmp_path / "a.docx"))
    with pytest.raises(UserError, match="no data files"):
        load_source(str(tmp_path))


def test_text_column_is_checked(tmp_path):
    write_all_formats(tmp_path)
    dataset, _ = load_source(str(tmp_path / "a.csv"))
    with pytest.raises(UserError, match="no column 'txt' \\(did you mean 'text'\\?\\)"):
        select_text(dataset, "txt", where="a.csv")
    with pytest.raises(UserError, match="not text"):
        select_text(dataset, "label", where="a.csv")
    assert select_text(dataset, "text", where="a.csv").column_names == ["text"]

import json
import subprocess
import sys

import datasets
import pytest
from helpers import json_line
from transformers import AutoTokenizer
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.recipe import load_recipe

runner = CliRunner()
SMALL = ["--set", "tokenizer.vocab_size=1000"]


def tokenize(*args):
    return runner.invoke(app, ["tokenize", *args])


def json_summary(result):
    return json_line(result.stdout)


def test_tokenize_writes_a_tokenizer_directory_that_loads(tmp_path):
    out = tmp_path / "tok"
    result = tokenize("--recipe", "tokenizer-byte-bpe", *SMALL, "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json_summary(result)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "recipe.yaml",
        "metrics.json",
        "README.md",
    ):
        assert (out / name).is_file(), name
    assert summary == json.loads((out / "metrics.json").read_text())
    assert summary["vocab_size"] == 1000 and summary["unknown_rate"] == 0.0
    assert summary["rows_in"] == 7222 and summary["rows_out"] == 7222 - summary["dropped_short"]
    assert 2.0 < summary["chars_per_token"] < 6.0 and summary["encode_mb_per_s"] > 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token == "<|endoftext|>" and len(tokenizer) == 1000
    # The saved recipe reproduces the run.
    assert load_recipe(str(out / "recipe.yaml")).tokenizer.vocab_size == 1000


def test_an_existing_tokenizer_is_measured_on_new_text(tmp_path):
    trained = tmp_path / "wp"
    assert tokenize("--recipe", "tokenizer-wordpiece", *SMALL, "-o", str(trained)).exit_code == 0
    text = tmp_path / "new.txt"
    text.write_text("the game 🙂 was released ☃\n" * 20 + "plain words only\n" * 5)
    result = tokenize(
        "--recipe",
        "tokenizer-wordpiece",
        "--set",
        f"tokenizer.path={trained}",
        "--set",
        f"data.train={text}",
        "-o",
        str(tmp_path / "measured"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json_summary(result)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    ids = [
        i
        for line in text.read_text().splitlines()
        for i in tokenizer(line, add_special_tokens=False)["input_ids"]
    ]
    assert summary["tokens"] == len(ids)
    assert summary["unknown_rate"] == pytest.approx(ids.count(tokenizer.unk_token_id) / len(ids))
    assert summary["unknown_rate"] > 0.1


def test_encode_packs_blocks_and_a_second_run_reuses_them(tmp_path):
    args = [
        "--recipe",
        "tokenizer-byte-bpe",
        *SMALL,
        "--set",
        "data.encode=true",
        "--set",
        "data.seq_len=128",
        "--json",
    ]
    first = json_summary(tokenize(*args, "-o", str(tmp_path / "a")))
    second = json_summary(tokenize(*args, "-o", str(tmp_path / "b")))
    assert (first["blocks_reused"], second["blocks_reused"]) == (False, True)
    assert first["blocks_path"] == second["blocks_path"]
    blocks = datasets.load_from_disk(first["blocks_path"])
    assert len(blocks) == first["blocks"] and {len(ids) for ids in blocks["input_ids"]} == {128}
    stream = first["tokens"] + first["documents"]  # one EOS per document
    assert first["blocks"] * 128 + first["dropped_tokens"] == stream


def test_the_tokenizer_trains_on_an_even_sample_within_train_bytes(tmp_path):
    budget = 300_000  # of the built-in corpus's 1.1 MB
    args = ["--recipe", "tokenizer-byte-bpe", *SMALL, "--json"]
    sampled = json_summary(
        tokenize(*args, "--set", f"tokenizer.train_bytes={budget}", "-o", str(tmp_path / "s"))
    )
    assert 0.95 * budget < sampled["tokenizer_train_bytes"] <= budget
    assert not sampled["tokenizer_train_whole_corpus"]
    assert sampled["tokenizer_train_rows"] < sampled["rows_out"] / 2
    assert sampled["rows_in"] == 7222 and sampled["peak_rss_mib"] > 0  # the whole corpus read
    whole = json_summary(tokenize(*args, "-o", str(tmp_path / "w")))
    assert (
        whole["tokenizer_train_whole_corpus"] and whole["tokenizer_train_rows"] == whole["rows_out"]
    )
    # A quarter of the text still learns most of the same merges.
    vocab = [set(AutoTokenizer.from_pretrained(tmp_path / d).get_vocab()) for d in ("s", "w")]
    assert len(vocab[0] & vocab[1]) > 0.8 * len(vocab[1])


def test_a_finished_run_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "tok"
    assert tokenize("--recipe", "tokenizer-byte-bpe", *SMALL, "-o", str(out)).exit_code == 0
    before = (out / "tokenizer.json").read_bytes()
    again = tokenize(
        "--recipe", "tokenizer-byte-bpe", "--set", "tokenizer.vocab_size=600", "-o", str(out)
    )
    assert again.exit_code == 2 and "already holds a finished run" in again.stderr
    assert "--resume" not in again.stderr  # tokenize has no --resume: the hint does not offer it
    assert "--overwrite" in again.stderr
    assert (out / "tokenizer.json").read_bytes() == before
    replaced = tokenize(
        "--recipe",
        "tokenizer-byte-bpe",
        "--set",
        "tokenizer.vocab_size=600",
        "-o",
        str(out),
        "--overwrite",
    )
    assert replaced.exit_code == 0
    assert len(AutoTokenizer.from_pretrained(out)) == 600


def test_a_folder_that_is_not_a_run_is_never_deleted(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    result = tokenize("--recipe", "tokenizer-byte-bpe", *SMALL, "-o", str(tmp_path), "--overwrite")
    assert result.exit_code == 2 and "not an llmkit run" in result.stderr
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_a_user_error_after_training_leaves_no_half_written_run(tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a few words only\n")
    out = tmp_path / "tok"
    result = tokenize(
        "--recipe",
        "tokenizer-byte-bpe",
        "--set",
        f"data.train={tiny}",
        "--set",
        "data.encode=true",
        "-o",
        str(out),
    )
    assert result.exit_code == 2 and "too small for one block" in result.stderr
    assert not out.exists()


def test_dry_run_prints_the_resolved_recipe_and_writes_nothing(tmp_path):
    result = tokenize(
        "--recipe",
        "tokenizer-byte-bpe",
        "--set",
        "data.seq_len=64",
        "-o",
        str(tmp_path / "x"),
        "--dry-run",
    )
    assert result.exit_code == 0
    assert "seq_len: 64" in result.stdout and "min_frequency: 2" in result.stdout
    assert not (tmp_path / "x").exists()


def bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("  \n\n \n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    return {
        "unknown key": (["--set", "data.trian=x"], "did you mean 'data.train'"),
        "wrong type": (["--set", "data.seq_len=long"], "recipe key 'data.seq_len'"),
        "missing recipe": (["--recipe", "no-such-recipe"], "no recipe named 'no-such-recipe'"),
        "missing data file": (["--set", f"data.train={tmp_path / 'missing.txt'}"], "missing.txt"),
        "empty corpus": (["--set", f"data.train={tmp_path / 'empty.txt'}"], "is empty"),
        "blank corpus": (
            ["--set", f"data.train={tmp_path / 'blank.txt'}"],
            "no text left after cleaning",
        ),
        "binary file": (["--set", f"data.train={tmp_path / 'binary.txt'}"], "not UTF-8 text"),
        "offline hub name": (["--set", "data.train=wikitext-103"], "cannot be reached"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown key",
        "wrong type",
        "missing recipe",
        "missing data file",
        "empty corpus",
        "blank corpus",
        "binary file",
        "offline hub name",
    ],
)
def test_user_errors_end_in_one_message_and_exit_2(tmp_path, case):
    extra, expected = bad_inputs(tmp_path)[case]
    recipe = [] if "--recipe" in extra else ["--recipe", "tokenizer-byte-bpe"]
    result = tokenize(*recipe, *extra, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert expected in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def run_module(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "llmkit", *args],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=300,
    )


def test_the_real_command_exits_2_without_a_traceback(tmp_path):
    result = run_module(
        "tokenize", "--recipe", "tokenizer-byte-bpe", "--set", "tokenizer.vocab_size=1"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "recipe key 'tokenizer.vocab_size'" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_module("tokenize", "--recipe", "nope", LLMKIT_DEBUG="1")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_the_real_command_json_is_the_last_stdout_line(tmp_path):
    result = run_module(
        "tokenize", "--recipe", "tokenizer-wordpiece", *SMALL, "-o", str(tmp_path / "t"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json_line(result.stdout)["vocab_size"] == 1000

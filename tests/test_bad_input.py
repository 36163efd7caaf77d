"""Fifty user mistakes across every command: each ends in exit 2, one message that names the
problem, no traceback, no half-written output directory, and nothing existing destroyed."""

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, TINY_MODEL, json_line, set_args
from typer.testing import CliRunner

from llmkit.cli import app

SMALL = set_args([*TINY_MODEL, "train.max_steps=2"])


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_bytes(b"")
    (d / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1") * 20)
    (d / "blank.txt").write_text("\n   \n\t\n")
    (d / "tiny.txt").write_text("a few words\n")
    (d / "notext.jsonl").write_text('{"body": "some text"}\n')
    whole = gzip.compress("".join(f"line {i} of a longer text\n" for i in range(4000)).encode())
    (d / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    (d / "texts").mkdir()
    (d / "texts" / "a.txt").write_text("fine text\n" * 20)
    (d / "texts" / "b.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 40)
    (d / "mixed").mkdir()
    (d / "mixed" / "a.txt").write_text("text\n")
    (d / "mixed" / "b.csv").write_text("text\nmore\n")
    (d / "doc.docx").write_text("not really a docx")
    (d / "afile").write_text("a file, not a folder")
    (d / "foreign").mkdir()
    (d / "foreign" / "thesis.tex").write_text("precious")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "broken.yaml").write_text("data: [unclosed\n")
    (d / "nolabel.tsv").write_text("sentence\tidx\nfine .\t0\n")
    (d / "badlabel.tsv").write_text("sentence\tlabel\nfine .\tmaybe\n")
    (d / "onecol.tsv").write_text("sentence1\tlabel\nA cat sat.\t0\n")
    (d / "prompts-empty.txt").write_text("\n \n")
    (d / "clue-nolabel.json").write_text('{"sentence": "没有标签的新闻"}\n', encoding="utf-8")
    (d / "clue-badlabel.json").write_text(
        '{"label": "105", "sentence": "不存在的类别"}\n', encoding="utf-8"
    )
    (d / "clue-empty.json").write_text("")
    (d / "prompts-bad.jsonl").write_text('{"text": "no prompt field"}\n')
    (d / "pickle-model").mkdir()
    (d / "pickle-model" / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    (d / "pickle-model" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    result = CliRunner().invoke(
        app,
        [
            "tokenize",
            "--recipe",
            "tokenizer-byte-bpe",
            "-o",
            str(d / "gpt-tok"),
            "--set",
            "tokenizer.vocab_size=2000",
        ],
    )
    assert result.exit_code == 0, result.output
    return d


T = ["tokenize", "--recipe", "tokenizer-byte-bpe", "-o", "{out}"]
P = ["pretrain-clm", "--recipe", "gpt2-tiny", "-o", "{out}", *SMALL]
M = ["pretrain-mlm", "--recipe", "bert-tiny", "-o", "{out}", *SMALL]
F = [
    "finetune",
    "--recipe",
    "glue-sst2",
    "-o",
    "{out}",
    "--set",
    "model.path={mlm}",
    "--set",
    f"task.data_dir={FIXTURES / 'glue' / 'SST-2'}",
]
E = ["eval-ppl", "--model", "{clm}", "--data", "builtin"]
C = [
    "finetune",
    "--recipe",
    "clue-tnews",
    "-o",
    "{out}",
    "--set",
    "model.path={mlm}",
    "--set",
    f"task.validation_file={FIXTURES / 'clue' / 'tnews_public' / 'dev.json'}",
    "--set",
]
CHINESE_WWM = [
    f"data.train={FIXTURES / 'chinese' / 'essays.txt'}",
    "data.seq_len=32",
    "objective.whole_word_mask=true",
]
G = ["generate", "--model", "{clm}"]

CASES = {
    # recipes and overrides
    "unknown key": (T + ["--set", "data.trian=x"], "did you mean 'data.train'"),
    "unknown section": (T + ["--set", "tokeniser.type=bpe"], "did you mean 'tokenizer'"),
    "wrong type": (T + ["--set", "data.seq_len=long"], "recipe key 'data.seq_len'"),
    "negative size": (
        T + ["--set", "tokenizer.vocab_size=-5"],
        "recipe key 'tokenizer.vocab_size'",
    ),
    "zero size": (P + ["--set", "train.batch_size=0"], "recipe key 'train.batch_size'"),
    "negative learning rate": (P + ["--set", "train.lr=-1"], "recipe key 'train.lr'"),
    "probability above 1": (
        M + ["--set", "objective.mlm_probability=1.5"],
        "objective.mlm_probability",
    ),
    "whole-word masking of Chinese without a segmenter": (
        M + set_args(CHINESE_WWM + ["objective.segmenter=none"]),
        "needs a word segmenter",
    ),
    "a segmenter with next-sentence pairs": (
        M + set_args(CHINESE_WWM + ["objective.segmenter=jieba", "objective.nsp=true"]),
        "not on next-sentence pairs",
    ),
    "CLUE file without labels": (
        C + ["task.train_file={bad}/clue-nolabel.json"],
        "has no 'label' field for clue/tnews",
    ),
    "CLUE label outside the task's set": (
        C + ["task.train_file={bad}/clue-badlabel.json"],
        "label '105' is outside clue/tnews's label set",
    ),
    "empty CLUE file": (C + ["task.train_file={bad}/clue-empty.json"], "clue-empty.json is empty"),
    "unknown choice": (
        T + ["--set", "tokenizer.type=sentencepiece"],
        "'byte-bpe', 'bpe', 'wordpiece' or 'unigram'",
    ),
    "override into a value": (
        T + ["--set", "data.train.path=x"],
        "'data.train' is a value, not a section",
    ),
    "override without =": (T + ["--set", "data.train"], "not of the form key=value"),
    "missing recipe": (
        ["tokenize", "--recipe", "no-such", "-o", "{out}"],
        "no recipe named 'no-such'",
    ),
    "recipe not a mapping": (
        ["tokenize", "--recipe", "{bad}/list.yaml", "-o", "{out}"],
        "must be a mapping",
    ),
    "recipe not YAML": (
        ["tokenize", "--recipe", "{bad}/broken.yaml", "-o", "{out}"],
        "not valid YAML",
    ),
    # data
    "missing data file": (
        T + ["--set", "data.train={bad}/missing.txt"],
        "neither an existing file",
    ),
    "empty data file": (T + ["--set", "data.train={bad}/empty.txt"], "is empty"),
    "blank data file": (T + ["--set", "data.train={bad}/blank.txt"], "no text left after cleaning"),
    "binary data file": (T + ["--set", "data.train={bad}/binary.txt"], "not UTF-8 text"),
    "latin-1 data file": (T + ["--set", "data.train={bad}/latin1.txt"], "not UTF-8 text"),
    "wrong column name": (T + ["--set", "data.train={bad}/notext.jsonl"], "no column 'text'"),
    "mixed folder": (T + ["--set", "data.train={bad}/mixed"], "mixes formats"),
    "glob matching nothing": (T + ["--set", "data.train={bad}/shard-*.txt"], "matches no files"),
    "truncated gzip": (T + ["--set", "data.train={bad}/cut.txt.gz"], "corrupt or truncated"),
    "binary file in a text folder": (
        T + ["--set", "data.train={bad}/texts"],
        "holds NUL bytes: it is a binary file",
    ),
    "max_tokens under one block": (
        P + ["--set", "data.max_tokens=10"],
        "less than one block",
    ),
    "unsupported ending": (T + ["--set", "data.train={bad}/doc.docx"], "unsupported ending"),
    "unknown known-name": (T + ["--set", "data.train=wikitext3"], "did you mean 'wikitext-"),
    "hub name offline": (T + ["--set", "data.train=wikitext-103"], "cannot be reached"),
    "corpus below one block": (
        P + ["--set", "data.train={bad}/tiny.txt"],
        "too small for one block",
    ),
    # models
    "no family": (P + ["--set", "model.family=null"], "neither model.family nor model.path"),
    "family for the other command": (
        ["pretrain-clm", "--recipe", "bert-tiny", "-o", "{out}"],
        "not a causal language model",
    ),
    "heads not dividing hidden": (P + ["--set", "model.heads=3"], "divisible by model.heads"),
    "sequence above positions": (
        P + ["--set", "model.max_positions=32"],
        "longer than the model's positions",
    ),
    "tokenizer above vocabulary": (
        P + ["--set", "model.vocab_size=512"],
        "but the model's vocabulary only 512",
    ),
    "nsp on roberta": (
        M + ["--set", "model.family=roberta", "--set", "objective.nsp=true"],
        "needs the bert family",
    ),
    "mlm with a gpt tokenizer": (M + ["--set", "tokenizer.path={bad}/gpt-tok"], "no mask token"),
    "model.path not a model": (
        P + ["--set", "model.path={bad}/foreign"],
        "is not a model directory",
    ),
    "pickle-only weights": (
        E[:1] + ["--model", "{bad}/pickle-model", "--data", "builtin"],
        "only pickle weights",
    ),
    "fp16 without a GPU": (P + ["--set", "train.precision=fp16"], "fp16 needs a CUDA GPU"),
    # output directories
    "output dir is a file": (
        ["tokenize", "--recipe", "tokenizer-byte-bpe", "-o", "{bad}/afile"],
        "is a file",
    ),
    "output dir not a run": (
        ["tokenize", "--recipe", "tokenizer-byte-bpe", "-o", "{bad}/foreign", "--overwrite"],
        "not an llmkit run",
    ),
    "finished run without flags": (
        ["pretrain-clm", "--recipe", "gpt2-tiny", "-o", "{clm}"],
        "already holds a finished run",
    ),
    "resume and overwrite": (P + ["--resume", "auto", "--overwrite"], "exclude each other"),
    "resume from nothing": (P + ["--resume", "{bad}/foreign"], "no complete checkpoint"),
    "resume a run without checkpoints": (
        ["pretrain-clm", "--recipe", "gpt2-tiny", "-o", "{clm}", "--resume", "auto"],
        "holds a finished run but no checkpoint",
    ),
    "unwritable output dir": (
        ["tokenize", "--recipe", "tokenizer-byte-bpe", "-o", "/proc/llmkit-run"],
        "cannot create output dir",
    ),
    # finetune
    "unknown task": (F + ["--set", "task.name=glue/sst-2"], "did you mean 'glue/sst2'"),
    "a task key of another kind": (
        F + ["--set", "task.doc_stride=64"],
        "'task.doc_stride' belongs to qa/* tasks, not to glue/sst2",
    ),
    "unknown task in a dry run": (
        ["finetune", "--recipe", "glue-sst2", "--set", "task.name=glue/sst3", "--dry-run"],
        "unknown task 'glue/sst3'",
    ),
    "finetune without a model": (F + ["--set", "model.path=null"], "finetune needs model.path"),
    "label column missing": (
        F + ["--set", "task.train_file={bad}/nolabel.tsv"],
        "has no label column",
    ),
    "label outside the set": (
        F + ["--set", "task.train_file={bad}/badlabel.tsv"],
        "outside glue/sst2's label set",
    ),
    "pair task, one column": (
        [
            "finetune",
            "--recipe",
            "glue-rte",
            "-o",
            "{out}",
            "--set",
            "model.path={mlm}",
            "--set",
            "task.train_file={bad}/onecol.tsv",
        ],
        "sentence-pair task",
    ),
    # eval-ppl and generate
    "model dir missing": (
        ["eval-ppl", "--model", "{bad}/nowhere", "--data", "builtin"],
        "does not exist",
    ),
    "stride above max length": (
        E + ["--max-length", "32", "--stride", "64"],
        "--stride 64 must be between",
    ),
    "max length above positions": (E + ["--max-length", "4096"], "outside 2..64"),
    "empty prompts file": (G + ["--prompts", "{bad}/prompts-empty.txt"], "holds no prompts"),
    "prompts without a prompt field": (
        G + ["--prompts", "{bad}/prompts-bad.jsonl"],
        'has no "prompt" text field',
    ),
    "prompt longer than positions": (
        G + ["--prompt", "x", "--max-new-tokens", "500"],
        "longer than the model's 64 positions",
    ),
    "masked LM prompt without mask": (
        ["generate", "--model", "{mlm}", "--prompt", "no mask"],
        "needs the mask token",
    ),
}
assert len(CASES) >= 40


def snapshot(*folders):
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for f in folders
        for p in Path(f).rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_ends_in_one_clear_message(case, bad, trained_clm, trained_mlm, tmp_path):
    argv, expected = CASES[case]
    out = tmp_path / "out"
    argv = [a.format(out=out, bad=bad, clm=trained_clm, mlm=trained_mlm) for a in argv]
    before = snapshot(trained_clm, trained_mlm, bad / "foreign")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert not out.exists(), "a failed command left an output directory behind"
    assert snapshot(trained_clm, trained_mlm, bad / "foreign") == before, (
        "something existing changed"
    )


def test_bad_flag_values_are_usage_errors(trained_clm):
    result = CliRunner().invoke(
        app, ["eval-ppl", "--model", str(trained_clm), "--data", "builtin", "--max-length", "long"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_full_disk_is_a_clear_run_failure(tmp_path):
    """A file-size limit stands in for a full disk: the write fails, the message says so."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmkit",
            "tokenize",
            "--recipe",
            "tokenizer-byte-bpe",
            "-o",
            str(tmp_path / "out"),
            "--set",
            "tokenizer.vocab_size=4000",
        ],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env={**os.environ, "LLMKIT_CACHE": str(tmp_path / "c")},
    )
    assert result.returncode == 1, result.stderr
    assert "cannot write" in result.stderr and "File too large" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "metrics.json").exists()


def test_one_giant_line_is_handled(tmp_path):
    giant = tmp_path / "giant.txt"
    giant.write_text("word " * 400_000)  # 2 MB, no newline
    result = CliRunner().invoke(
        app,
        [
            "tokenize",
            "--recipe",
            "tokenizer-byte-bpe",
            "-o",
            str(tmp_path / "t"),
            "--set",
            f"data.train={giant}",
            "--set",
            "data.encode=true",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json_line(result.stdout)["documents"] == 1
    capped = CliRunner().invoke(
        app,
        [
            "tokenize",
            "--recipe",
            "tokenizer-byte-bpe",
            "-o",
            str(tmp_path / "u"),
            "--set",
            f"data.train={giant}",
            "--set",
            "data.clean.max_chars=10000",
        ],
    )
    assert capped.exit_code == 2 and "too long" in capped.stderr


# Runs the CLI in a fresh interpreter and prints its exit code and the heavy libraries that
# were imported by the time it failed.
FAIL_BEFORE_IMPORTS = """
import sys
from typer.testing import CliRunner
from llmkit.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = [m for m in ("torch", "transformers", "datasets") if m in sys.modules]
print(result.exit_code, *heavy, "|", result.output.replace("\\n", " "))
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pretrain-clm", "--recipe", "gpt2-tiny", "-o", "{notrun}"], "not an llmkit run"),
        (["pretrain-mlm", "--recipe", "bert-tiny", "-o", "{finished}"], "already holds a finished"),
        (
            ["pretrain-clm", "--recipe", "gpt2-tiny", "--resume", "{notrun}", "-o", "{tmp}/out"],
            "no complete checkpoint",
        ),
        (
            [
                "tokenize",
                "--recipe",
                "tokenizer-byte-bpe",
                "--set",
                "data.train={tmp}/nothing.txt",
                "-o",
                "{tmp}/out",
            ],
            "neither an existing file",
        ),
        (
            [
                "pretrain-clm",
                "--recipe",
                "gpt2-tiny",
                "--set",
                "data.validation={tmp}/no/",
                "-o",
                "{tmp}/out",
            ],
            "neither an existing file",
        ),
    ],
)
def test_a_bad_output_folder_or_corpus_fails_before_the_heavy_imports(tmp_path, args, expected):
    (tmp_path / "notrun").mkdir()
    (tmp_path / "notrun" / "notes.txt").write_text("mine")
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "recipe.yaml").write_text("name: x\n")
    (finished / "metrics.json").write_text("{}")
    filled = [a.format(tmp=tmp_path, notrun=tmp_path / "notrun", finished=finished) for a in args]
    printed = subprocess.run(
        [sys.executable, "-c", FAIL_BEFORE_IMPORTS, *filled],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    code_and_modules, output = printed.split("|", 1)
    assert code_and_modules.split() == ["2"], printed  # exit 2, and none of the three imported
    assert expected in output

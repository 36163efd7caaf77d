"""With HF_HUB_OFFLINE=1 nothing reaches for the network: every socket connection fails here."""

import socket

import pytest
from helpers import FIXTURES, TINY_MODEL, json_line, set_args
from typer.testing import CliRunner

from llmkit.cli import app


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def run(*args):
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json_line(result.stdout)


def test_the_whole_pipeline_runs_with_sockets_blocked(tmp_path, no_network):
    small = set_args([*TINY_MODEL, "train.max_steps=4", "train.eval_every=1000"])
    run(
        "tokenize",
        "--recipe",
        "tokenizer-wordpiece",
        "-o",
        str(tmp_path / "tok"),
        "--set",
        "data.encode=true",
    )
    run("pretrain-clm", "--recipe", "gpt2-tiny", "-o", str(tmp_path / "gpt"), *small)
    run("pretrain-mlm", "--recipe", "bert-tiny", "-o", str(tmp_path / "bert"), *small)
    run("eval-ppl", "--model", str(tmp_path / "gpt"), "--data", "builtin", "--max-length", "64")
    run(
        "generate",
        "--model",
        str(tmp_path / "gpt"),
        "--prompt",
        "The game",
        "--max-new-tokens",
        "4",
    )
    run(
        "finetune",
        "--recipe",
        "glue-rte",
        "-o",
        str(tmp_path / "rte"),
        "--set",
        f"model.path={tmp_path / 'bert'}",
        "--set",
        f"task.data_dir={FIXTURES / 'glue' / 'RTE'}",
        "--set",
        "task.max_train_examples=32",
    )
    assert no_network == []


def test_a_hub_name_offline_is_refused_without_connecting(no_network, trained_clm):
    result = CliRunner().invoke(
        app, ["eval-ppl", "--model", str(trained_clm), "--data", "wikitext-103"]
    )
    assert result.exit_code == 2 and "cannot be reached" in result.stderr
    assert no_network == []

"""The training guards: a clean stop on SIGTERM, a loud one on a non-finite loss."""

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import TINY_MODEL, set_args
from safetensors.torch import load_file
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.commands.pretrain import run_pretrain
from llmkit.errors import RunFailed
from llmkit.recipe import load_recipe

SMALL = [
    *TINY_MODEL,
    "train.eval_every=1000",
    "data.validation_fraction=0",
]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = load_recipe(
        "gpt2-tiny",
        [
            *SMALL,
            "train.max_steps=40",
            "train.lr=1e4",
            "train.max_grad_norm=0",
            "train.log_every=2",
            "train.save_every=2",
        ],
    )
    with pytest.raises(RunFailed, match=r"became nan by step 4.*checkpoint-2"):
        run_pretrain(recipe, "clm", output_dir=tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint-2" / "model.safetensors").is_file()
    assert not (tmp_path / "run" / "checkpoint-4").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_nan_loss_exits_1_with_one_message(tmp_path):
    args = ["pretrain-clm", "--recipe", "gpt2-tiny", "-o", str(tmp_path / "run")]
    args += set_args(
        [*SMALL, "train.max_steps=40", "train.lr=1e4", "train.max_grad_norm=0", "train.log_every=2"]
    )
    result = CliRunner().invoke(app, args)
    assert (
        result.exit_code == 1 and "became nan" in result.stderr and "Traceback" not in result.output
    )


def start_training(run_dir, overrides, until):
    """A real `llmkit pretrain-clm` process, returned once a stderr line contains `until`."""
    command = [
        sys.executable,
        "-m",
        "llmkit",
        "pretrain-clm",
        "--recipe",
        "gpt2-tiny",
        "-o",
        str(run_dir),
    ]
    command += set_args(overrides)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    seen = ""
    for line in process.stderr:
        seen += line
        if until in line:
            return process
    raise AssertionError(f"the run ended before {until!r}:\n{seen}")


def test_sigterm_writes_a_checkpoint_that_resumes_to_the_uninterrupted_weights(tmp_path):
    # SIGTERM comes at step 5; the run could not reach step 120 before it stops
    overrides = [*SMALL, "train.max_steps=120", "train.log_every=1", "model.dropout=0.1"]
    whole = load_recipe("gpt2-tiny", overrides)
    process = start_training(tmp_path / "parts", overrides, until="step      5")
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=240)
    assert process.returncode == 130, rest
    assert "stopped by SIGTERM" in rest and "--resume auto" in rest and "Traceback" not in rest
    parts = tmp_path / "parts"
    checkpoints = sorted(parts.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "trainer_state.json").is_file()
    assert not (parts / "metrics.json").exists(), "an interrupted run must not look finished"
    stopped_at = json.loads((checkpoints[0] / "trainer_state.json").read_text())["global_step"]
    assert 5 <= stopped_at < 120

    resumed = run_pretrain(whole, "clm", output_dir=parts, resume="auto")
    assert resumed["steps"] == 120 and resumed["resumed_from"] == str(checkpoints[0])
    run_pretrain(whole, "clm", output_dir=tmp_path / "whole")
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(parts / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_a_second_ctrl_c_quits_at_once(tmp_path):
    overrides = [*SMALL, "train.max_steps=100000", "train.log_every=1"]
    process = start_training(tmp_path / "run", overrides, until="step")
    process.send_signal(signal.SIGINT)
    for line in process.stderr:  # the first Ctrl-C is acknowledged: press again
        if "press Ctrl-C again" in line:
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in rest and "Traceback" not in rest
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_launcher_that_started_one_of_several_processes_is_detected(monkeypatch):
    from llmkit.training import launcher_fell_back_to_one_process

    for name in ("ACCELERATE_MIXED_PRECISION", "MASTER_ADDR", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not launcher_fell_back_to_one_process()  # a plain run
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert not launcher_fell_back_to_one_process()  # accelerate launch of one process
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what --num_processes 2 exports ...
    assert launcher_fell_back_to_one_process()  # ... when only one process was started
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not launcher_fell_back_to_one_process()  # the processes really started

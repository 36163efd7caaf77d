"""SIGKILL at any moment loses at most the steps since the last checkpoint, never a checkpoint."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_MODEL, set_args
from safetensors.torch import load_file

from llmkit.commands.pretrain import run_pretrain
from llmkit.recipe import load_recipe
from llmkit.rundir import complete_checkpoints

pytestmark = pytest.mark.slow  # minutes: `make test-fast` skips these

OVERRIDES = [
    *TINY_MODEL,
    "data.validation_fraction=0",
    "train.max_steps=16",
    "train.save_every=4",
    "train.keep_checkpoints=3",
    "train.log_every=1",
    "model.dropout=0.1",
    "data.shard_mb=0.05",  # the packed corpus spread over ~10 memory-mapped shards
]

# Runs the real CLI; SLOW_PUBLISH_STEP holds one checkpoint in its staging folder for a minute,
# so that the test can kill the job while that checkpoint is being written.
DRIVER = """
import os, sys, time
import llmkit.training as training
slow_step = os.environ.get("SLOW_PUBLISH_STEP")
if slow_step:
    publish = training.publish_checkpoint
    def slow(staged, final):
        if final.name == f"checkpoint-{slow_step}":
            time.sleep(60)
        publish(staged, final)
    training.publish_checkpoint = slow
from llmkit.cli import main
sys.argv = ["llmkit", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    run_pretrain(load_recipe("gpt2-tiny", OVERRIDES), "clm", output_dir=out)
    return load_file(out / "model.safetensors")


def kill_when(tmp_path, ready, slow_step=None):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = [
        sys.executable,
        str(driver),
        "pretrain-clm",
        "--recipe",
        "gpt2-tiny",
        "-o",
        str(tmp_path / "run"),
    ]
    command += set_args(OVERRIDES)
    env = {**os.environ, **({"SLOW_PUBLISH_STEP": str(slow_step)} if slow_step else {})}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 240
    while not ready(tmp_path / "run"):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline, "the run never reached the kill point"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("point", "ready", "slow_step", "kept"),
    [
        ("after the first checkpoint", lambda run: (run / "checkpoint-4").exists(), None, 4),
        ("after the second checkpoint", lambda run: (run / "checkpoint-8").exists(), None, 8),
        (
            "while the second is written",
            lambda run: (run / ".staging" / "checkpoint-8" / "trainer_state.json").exists(),
            8,
            4,
        ),
    ],
)
def test_killed_runs_resume_to_the_uninterrupted_weights(
    tmp_path, uninterrupted, point, ready, slow_step, kept
):
    kill_when(tmp_path, ready, slow_step)
    run = tmp_path / "run"
    checkpoints = complete_checkpoints(run)
    assert checkpoints and checkpoints[-1].name.startswith("checkpoint-")
    assert int(checkpoints[-1].name.split("-")[1]) >= kept
    if slow_step:  # the half-written checkpoint is invisible, not corrupt
        assert not (run / f"checkpoint-{slow_step}").exists()
        assert checkpoints[-1].name == f"checkpoint-{kept}"
    resumed = run_pretrain(
        load_recipe("gpt2-tiny", OVERRIDES), "clm", output_dir=run, resume="auto"
    )
    assert resumed["steps"] == 16 and resumed["resumed_from"] == str(checkpoints[-1])
    assert not (run / ".staging").exists()
    # keep_checkpoints=3: of checkpoints 4, 8, 12, 16 the newest three remain.
    assert [c.name for c in complete_checkpoints(run)] == [
        "checkpoint-8",
        "checkpoint-12",
        "checkpoint-16",
    ]
    final = load_file(run / "model.safetensors")
    assert max((final[k] - uninterrupted[k]).abs().max().item() for k in final) <= 1e-6
    shards = list(Path(os.environ["LLMKIT_CACHE"]).glob("blocks/*/data-*-of-*.arrow"))
    assert len(shards) >= 8  # the data order held across shards

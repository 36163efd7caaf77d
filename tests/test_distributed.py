"""The same recipe under torchrun (CPU, gloo): 2 processes, and 2 "nodes" on localhost."""

import json
import os
import shutil
import socket
import subprocess

import pytest
from helpers import TINY_MODEL, set_args

from llmkit.commands.pretrain import run_pretrain
from llmkit.recipe import load_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH"),
]
OVERRIDES = [
    *TINY_MODEL,
    "model.dropout=0",
    "train.max_steps=20",
    "train.log_every=5",
    "train.eval_every=1000",
]


def llmkit_args(run_dir, batch_size, *extra):
    args = ["-m", "llmkit", "pretrain-clm", "--recipe", "gpt2-tiny", "-o", str(run_dir), "--json"]
    return args + set_args([*OVERRIDES, f"train.batch_size={batch_size}", *extra])


def losses(run_dir):
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, optimizer):
    chosen = f"train.optimizer={optimizer}"
    single = run_pretrain(
        load_recipe("gpt2-tiny", [*OVERRIDES, "train.batch_size=16", chosen]),
        "clm",
        output_dir=tmp_path / "single",
    )
    result = subprocess.run(
        [
            "torchrun",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            *llmkit_args(tmp_path / "ddp", 8, chosen),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    json_lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1, "only the main process prints"
    summary = json.loads(json_lines[0])
    assert "global batch: 8 per device × 1 accumulation × 2 processes = 16" in result.stderr
    assert summary["train_tokens"] == single["train_tokens"] == 20 * 16 * 64
    one, two = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert one.keys() == two.keys() and 20 in one
    assert all(abs(one[step] - two[step]) <= 1e-4 for step in one)
    # Perplexity comes from summed token NLL, so it is the same however evaluation is split.
    assert summary["eval_perplexity"] == pytest.approx(single["eval_perplexity"], rel=1e-4)
    assert (tmp_path / "ddp" / "metrics.json").is_file()


def test_two_nodes_through_torchrun_rendezvous(tmp_path):
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            [
                "torchrun",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(rank),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                port,
                *llmkit_args(tmp_path / "run", 8),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    printed = [line for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and json.loads(printed[0])["steps"] == 20
    assert "2 processes" in outputs[0][1]
    assert (tmp_path / "run" / "metrics.json").is_file()


ORDER_PROBE = """
import json, sys, time
from accelerate import PartialState
from llmkit.training import main_processes_first

state = PartialState(cpu=True)
with main_processes_first():
    start = time.time()
    time.sleep(1.0)  # long enough that an overlap could not go unseen
    record = {"rank": state.process_index, "local": state.local_process_index,
              "start": start, "end": time.time()}
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(record) + "\\n")
"""


def test_data_is_prepared_by_the_main_process_then_each_machines_then_the_rest(tmp_path):
    script, log = tmp_path / "probe.py", tmp_path / "order.jsonl"
    script.write_text(ORDER_PROBE)
    port = str(free_port())
    common = ["--nnodes", "2", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    nodes = [
        subprocess.Popen(
            [
                "torchrun",
                *common,
                "--node_rank",
                str(rank),
                "--master_port",
                port,
                str(script),
                str(log),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    records = {r["rank"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert sorted(records) == [0, 1, 2, 3]
    # rank 0 is the main process; rank 2 the second machine's main; 1 and 3 the rest.
    assert records[0]["end"] <= records[2]["start"]
    assert records[2]["end"] <= min(records[1]["start"], records[3]["start"])

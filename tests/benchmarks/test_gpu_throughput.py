"""benchmarks/gpu_throughput.py keeps working: a tiny model, a few steps, on this CPU."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


@pytest.fixture(scope="module")
def gpu_throughput():
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_and_mfu_follow_from_the_timed_steps(gpu_throughput, tmp_path):
    tiny = ["model.layers=1", "model.hidden=64", "model.heads=2", "data.seq_len=64"]
    argv = ["--only", "gpt2-small", "--steps", "3", "--warmup", "1", "--peak-tflops", "0.5"]
    for override in [*tiny, "train.batch_size=4", "train.grad_accum=2"]:
        argv += ["--set", override]
    [result] = gpu_throughput.main([*argv, "--output", str(tmp_path / "out.jsonl")])
    assert result["timed_tokens"] == 3 * 4 * 2 * 64  # steps × batch × accumulation × seq_len
    assert result["global_batch"] == 8 and result["seq_len"] == 64
    assert result["precision"] == "fp32" and result["compiled"] is False  # auto on a CPU
    tflops = result["tokens_per_second"] * result["flops_per_token"] / 1e12
    assert result["mfu"] == pytest.approx(tflops / 0.5, abs=1e-4)
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 1

"""Token perplexity as a user waits for it: the whole `llmkit eval-ppl --metrics token`
command against the HF guide's loop as a whole script.

Both are timed from process start to exit (Python start-up, imports, loading the model,
reading and tokenizing the text, scoring): the command is `python -m llmkit eval-ppl --model
M --data TEXT --max-length 128 --stride 64 --metrics token --json` with a datasets cache of
its own (a first run: nothing cached), the script `benchmarks/eval_ppl.py`'s plain way (the
loop of "Perplexity of fixed-length models", batch 1), which also reports its loop alone. The
metric is scored tokens per second of wall time.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.harness import ROOT, way_main


def _timed(command: list[str], env: dict | None = None) -> tuple[float, dict]:
    """Wall seconds of `command` and its last stdout line (JSON), with the child's peak
    resident memory as the result's `peak_mib` (this process is only a stopwatch)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, result


def llmkit_way(options: dict) -> dict:
    command = [sys.executable, "-m", "llmkit", "eval-ppl", "--model", options["model"]]
    command += ["--data", options["text"], "--max-length", str(options["max_length"])]
    command += ["--stride", str(options["stride"]), "--metrics", "token", "--json"]
    with tempfile.TemporaryDirectory() as cache:
        env = os.environ | {"HF_DATASETS_CACHE": cache}
        seconds, summary = _timed(command, env)
    return {
        "value": summary["tokens"] / seconds,
        "wall_seconds": seconds,
        "scoring_seconds": summary["seconds"],
        "perplexity": summary["token_perplexity"],
        "peak_mib": summary["peak_mib"],
    }


def plain_way(options: dict) -> dict:
    command = [sys.executable, "-m", "benchmarks.eval_ppl", "--way", "plain HF"]
    seconds, result = _timed([*command, "--options", json.dumps(options)])
    tokens = result["tokens"]  # scored: the same count as llmkit's
    return {
        "value": tokens / seconds,
        "wall_seconds": seconds,
        "loop_seconds": (tokens + 1) / result["value"],  # its value counts the stream's tokens
        "perplexity": result["perplexity"],
        "peak_mib": result["peak_mib"],
    }


WAYS = {"llmkit": llmkit_way, "plain HF": plain_way}

if __name__ == "__main__":
    way_main(WAYS)

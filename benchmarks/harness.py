"""What every benchmark shares: fresh processes, alternating runs, medians, peak memory.

Each way of doing a task (llmkit's, or the plain Hugging Face one) runs in a fresh Python
process, so each starts cold, pays its own imports, and its peak resident memory is its own.
The two ways alternate (A B A B ...), so a slow moment of the machine hurts both alike. A
benchmark module exposes `WAYS = {"llmkit": fn, "plain HF": fn}` whose functions return a dict
with the measured `value` (and anything else worth showing); `compare` runs them.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"
# WikiText-2 valid (tokenized), kept in the repository as a test fixture.
WIKITEXT_VALID = ROOT / "tests" / "fixtures" / "wikitext-2-valid.txt"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def status_mib(field: str, pid: int | str = "self") -> float | None:
    """A memory figure of /proc/<pid>/status (VmRSS: resident now, VmHWM: peak), or None where
    there is none (not Linux, or the process has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_memory_mib() -> float:
    """This process's peak resident memory. (Not getrusage's ru_maxrss: a child process
    inherits its parent's figure across fork and exec.)"""
    peak = status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Comparison:
    name: str  # e.g. "pretrain-clm"
    metric: str  # e.g. "tokens/s"
    runs: dict[str, list[dict]] = field(default_factory=dict)

    def values(self, way: str) -> list[float]:
        return [run["value"] for run in self.runs[way]]

    def median(self, way: str) -> float:
        return statistics.median(self.values(way))

    def ratios(self) -> list[float]:
        """llmkit over plain, pairing the runs of each round (so min/max are real pairs)."""
        pairs = zip(self.values("llmkit"), self.values("plain HF"), strict=True)
        return [a / b for a, b in pairs]

    def row(self) -> dict:
        ratios = self.ratios()
        return {
            "benchmark": self.name,
            "metric": self.metric,
            "llmkit": self.median("llmkit"),
            "plain HF": self.median("plain HF"),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "llmkit_peak_mib": max(r["peak_mib"] for r in self.runs["llmkit"]),
            "plain_peak_mib": max(r["peak_mib"] for r in self.runs["plain HF"]),
            "rounds": len(ratios),
        }


def run_way(module: str, way: str, options: dict) -> dict:
    """One way, in a fresh process: `python -m benchmarks.<module> --way ... --options ...`."""
    command = [sys.executable, "-m", f"benchmarks.{module}", "--way", way, "--options"]
    result = subprocess.run(
        [*command, json.dumps(options)], capture_output=True, text=True, cwd=ROOT, timeout=1800
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} {way} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(
    module: str,
    name: str,
    metric: str,
    *,
    rounds: int,
    options: dict,
    ways: tuple[str, ...] = ("llmkit", "plain HF"),
) -> Comparison:
    comparison = Comparison(name, metric, {way: [] for way in ways})
    for round_ in range(rounds):
        order = ways if round_ % 2 == 0 else tuple(reversed(ways))  # alternate who goes first
        for way in order:
            result = run_way(module, way, options)
            comparison.runs[way].append(result)
            print(
                f"  {name} round {round_ + 1}: {way}: {result['value']:,.2f} {metric}", flush=True
            )
    return comparison


def way_main(ways: dict[str, Callable[[dict], dict]]) -> None:
    """Entry point of a benchmark module run as one way: prints one JSON line."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--way", required=True, choices=list(ways))
    parser.add_argument("--options", default="{}")
    args = parser.parse_args()
    from llmkit.cli import quiet_libraries

    quiet_libraries()
    result = ways[args.way](json.loads(args.options))
    result.setdefault("peak_mib", peak_memory_mib())  # a way that runs a child reports its own
    print(json.dumps(result))


def save_result(name: str, result: dict) -> Path:
    """benchmarks/out/<name>.json, the benchmark's result."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def benchmark_main(ways: dict[str, Callable[[dict], dict]], main: Callable[[], None]) -> None:
    """A benchmark module's entry point: one of its ways when `compare` runs it in a fresh
    process (`--way`), else the whole benchmark."""
    if "--way" in sys.argv:
        way_main(ways)
    else:
        main()

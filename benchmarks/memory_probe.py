"""Resident memory of a training run over time: does it grow with steps?

Each case runs the real command (`python -m llmkit ...`) in a fresh process, with no
evaluation during training, and samples that process's resident set size (VmRSS) every
`--interval` seconds. A run whose memory does not grow has the same median RSS in the last
quarter of its samples as in the second (the first quarter is start-up: data, model,
optimizer state). Reported per case: the two medians, their ratio, and the peak.

    python -m benchmarks.memory_probe [--steps 5000] [--batch-size 32] [--only mlm,clm]

Cases: clm (gpt2-tiny), mlm, mlm-nsp, mlm-wwm (bert-tiny; the same layers, hidden size and
vocabulary as gpt2-tiny) and finetune-sst2 (glue-sst2 on the mlm case's model). The corpus is
WikiText-2 valid from ../shared/data when present, else the built-in corpus. Results go
into benchmarks/out/memory.json (a case run again replaces its entry).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import OUT, ROOT, SHARED_DATA, WIKITEXT_VALID, status_mib

PRETRAINING = {
    "clm": ("pretrain-clm", "gpt2-tiny", []),
    "mlm": ("pretrain-mlm", "bert-tiny", []),
    "mlm-nsp": ("pretrain-mlm", "bert-tiny", ["objective.nsp=true"]),
    "mlm-wwm": ("pretrain-mlm", "bert-tiny", ["objective.whole_word_mask=true"]),
}
CASES = (*PRETRAINING, "finetune-sst2")


def sample_run(command: list[str], interval: float) -> dict:
    """Run `command`, sampling its RSS; the summary of the samples."""
    started = time.perf_counter()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    samples: list[float] = []
    while process.poll() is None:
        rss = status_mib("VmRSS", process.pid)
        if rss is not None:
            samples.append(rss)
        time.sleep(interval)
    if process.returncode != 0:
        log.seek(0)
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read().decode()[-3000:]}")
    quarter = max(1, len(samples) // 4)
    second = statistics.median(samples[quarter : 2 * quarter])
    last = statistics.median(samples[-quarter:])
    return {
        "samples": len(samples),
        "second_quarter_mib": second,
        "last_quarter_mib": last,
        "growth": last / second - 1,
        "peak_mib": max(samples),
        "wall_s": time.perf_counter() - started,
    }


def corpus() -> Path:
    shared = SHARED_DATA / "wikitext-2" / "valid.txt"
    if shared.is_file():
        return shared
    return WIKITEXT_VALID


def sst2_files() -> tuple[Path, Path]:
    shared = SHARED_DATA / "glue" / "SST-2"
    if (shared / "dev.tsv").is_file():
        return shared / "alps_resplit_of_glue_train" / "train.tsv", shared / "dev.tsv"
    fixtures = ROOT / "tests" / "fixtures" / "glue" / "SST-2"
    return fixtures / "train.tsv", fixtures / "dev.tsv"


def command_for(case: str, work: Path, steps: int, batch_size: int) -> list[str]:
    llmkit = [sys.executable, "-m", "llmkit"]
    common = [
        f"train.max_steps={steps}",
        f"train.batch_size={batch_size}",
        "train.eval_every=null",
        f"train.log_every={max(1, steps // 10)}",
    ]
    if case in PRETRAINING:
        command, recipe, extra = PRETRAINING[case]
        sets = [f"data.train={corpus()}", "data.validation_fraction=0", *common, *extra]
    else:
        command, recipe = "finetune", "glue-sst2"
        train_file, dev_file = sst2_files()
        sets = [
            f"model.path={work / 'mlm'}",
            f"task.train_file={train_file}",
            f"task.validation_file={dev_file}",
            *common,
        ]
    options = [arg for value in sets for arg in ("--set", value)]
    return [*llmkit, command, "--recipe", recipe, "--output-dir", str(work / case), *options]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    args = parser.parse_args()
    cases = args.only.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; cases: {', '.join(CASES)}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in cases:
            if case == "finetune-sst2" and "mlm" not in results:
                # the model to fine-tune: a short masked-LM run, not measured
                subprocess.run(
                    command_for("mlm", work, 200, args.batch_size),
                    check=True,
                    cwd=ROOT,
                    capture_output=True,
                )
            results[case] = sample_run(
                command_for(case, work, args.steps, args.batch_size), args.interval
            )
            results[case].update(steps=args.steps, batch_size=args.batch_size)
            r = results[case]
            print(
                f"{case:14} RSS 2nd quarter {r['second_quarter_mib']:7.0f} MiB  "
                f"last quarter {r['last_quarter_mib']:7.0f} MiB  ({r['growth']:+.1%})  "
                f"peak {r['peak_mib']:7.0f} MiB  {r['wall_s']:6.0f} s",
                flush=True,
            )
    if "clm" in results:
        for case in ("mlm", "mlm-nsp", "mlm-wwm"):
            if case in results:
                ratio = results[case]["peak_mib"] / results["clm"]["peak_mib"]
                print(f"peak {case} / peak clm: {ratio:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    saved = OUT / "memory.json"  # cases run separately accumulate here
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    saved.write_text(json.dumps({**previous, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Peak memory of fine-tuning a gpt2-small-shaped model: every weight against LoRA adapters.

The base is gpt2-small's shape (12 layers, hidden 768, 12 heads) with an 8,192-entry
byte-level BPE trained on the built-in corpus and 256 positions, pretrained for one step (the
weights' values do not change the memory). Each case runs `python -m llmkit finetune --recipe
sft-completion` (the SST-2 completion fixtures) in a fresh process for --steps steps and
samples its resident set size; the peak is reported, with the trainable parameters.

    python -m benchmarks.lora_memory [--steps 20] [--batch-size 8]

Results go into benchmarks/out/lora_memory.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import OUT
from benchmarks.memory_probe import sample_run

BASE = [
    "model.layers=12",
    "model.hidden=768",
    "model.heads=12",
    "data.seq_len=256",
    "tokenizer.vocab_size=8192",
    "train.max_steps=1",
    "train.batch_size=2",
    "data.validation_fraction=0",
]
CASES = {"full": [], "lora": ["model.lora.r=8"]}


def llmkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmkit", *args]


def sets(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    options = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "base"
        sample_run(
            llmkit("pretrain-clm", "--recipe", "gpt2-tiny", "-o", str(base), *sets(BASE)), 0.2
        )
        for name, extra in CASES.items():
            out = Path(folder) / name
            overrides = [
                f"model.path={base}",
                f"train.max_steps={options.steps}",
                f"train.batch_size={options.batch_size}",
                "task.generate_examples=0",
                "task.max_eval_examples=16",
                *extra,
            ]
            command = llmkit(
                "finetune", "--recipe", "sft-completion", "-o", str(out), *sets(overrides)
            )
            measured = sample_run(command, 0.1)
            summary = json.loads((out / "metrics.json").read_text())
            every = json.loads((base / "metrics.json").read_text())["parameters"]
            results[name] = {
                "peak_mib": round(measured["peak_mib"]),
                "wall_s": round(measured["wall_s"], 1),
                "trainable_parameters": summary.get("trainable_parameters", every),
                "parameters": summary.get("parameters", every),
                "train_runtime_s": summary["train_runtime_s"],
            }
            print(name, results[name], flush=True)
    results["peak_ratio_lora_to_full"] = round(
        results["lora"]["peak_mib"] / results["full"]["peak_mib"], 3
    )
    results["settings"] = {"steps": options.steps, "batch_size": options.batch_size, "base": BASE}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lora_memory.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

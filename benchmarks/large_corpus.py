"""Corpora larger than a toy: encode + pack at 0.2 GB and 1 GB, against the ceilings.

Builds corpora of real text (WikiText-2, Tiny Shakespeare, SQuAD contexts from ../shared/data,
else the built-in corpus; its lines shuffled and repeated up to the size) and measures, each
in a fresh process whose peak resident memory is the whole process tree's (`os.wait4`):

- `llmkit tokenize --set data.encode=true` (seq_len 1024, an 8,192-entry byte-BPE given by
  tokenizer.path) at each size: wall time, MB/s, peak RSS, disk of the block cache, and disk
  of the datasets cache (which stays empty: the corpus is streamed, never copied);
- run_clm's way on the 0.2 GB corpus (`load_dataset("text")`, `datasets.map` tokenize,
  `datasets.map` group_texts), as run_clm runs by default (one process; the tokenizer's
  batch calls use both cores) and with --preprocessing_num_workers 2;
- the raw Rust batch encoder (`encode_batch_fast`, one process, both cores) on the same text,
  held in memory, timing only the encoding: the ceiling of this design;
- `pretrain-clm` on each packed corpus: seconds from the Trainer being built (model ready)
  to the first optimizer step, and resident memory then;
- tokenizer training with the default sample budget (tokenizer.train_bytes) on the 1 GB
  corpus, and with a budget of a quarter of it (the sampling path): bytes used, wall time,
  peak RSS.

    python -m benchmarks.large_corpus [--sizes 0.2,1] [--work DIR] [--parts ...]
                                                              (~25 min on 2 cores)

Writes benchmarks/out/large_corpus.json and prints the table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import OUT, ROOT, SHARED_DATA, WIKITEXT_VALID

SEQ_LEN = 1024


def real_lines() -> list[str]:
    sources = [
        SHARED_DATA / "wikitext-2" / "valid.txt",
        SHARED_DATA / "wikitext-2" / "test.txt",
        SHARED_DATA / "tinyshakespeare" / "input.txt",
    ]
    lines = [ln for p in sources if p.is_file() for ln in p.read_text("utf-8").split("\n")]
    squad = SHARED_DATA / "squad" / "dev-v1.1.json"
    if squad.is_file():
        articles = json.loads(squad.read_text("utf-8"))["data"]
        lines += [p["context"] for a in articles for p in a["paragraphs"]]
    if not lines:
        lines = WIKITEXT_VALID.read_text("utf-8").split("\n")
    return lines


def build_corpus(path: Path, size: int) -> None:
    if path.is_file() and path.stat().st_size >= size:
        return
    lines, rng, written = real_lines(), random.Random(0), 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            rng.shuffle(lines)
            text = "\n".join(lines) + "\n"
            data = text.encode()[: size - written]
            text = data.decode("utf-8", errors="ignore")
            out.write(text)
            written += len(data)


def disk_mib(path: Path) -> float:
    if not path.exists():
        return 0.0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def measured(command: list[str], env: dict | None = None) -> dict:
    """Run `command`; wall seconds, the peak RSS of its process tree, its last stdout line.

    wait4's rusage is the child's own together with its waited-for descendants (the forked
    encoders), and ru_maxrss is the largest of them.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=err, env={**os.environ, **(env or {})}
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{stderr[-3000:]}")
    last = stdout.strip().splitlines()[-1] if stdout.strip() else "{}"
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024, "result": json.loads(last)}


PY = [sys.executable, "-c"]

RUN_CLM = """
import json, sys, time
from itertools import chain
import datasets
from transformers import AutoTokenizer
corpus, tok, seq_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
num_proc = None if sys.argv[4] == "default" else int(sys.argv[4])
started = time.perf_counter()
raw = datasets.load_dataset("text", data_files=corpus, split="train")
tokenizer = AutoTokenizer.from_pretrained(tok)
tokenized = raw.map(lambda b: tokenizer(b["text"]), batched=True, num_proc=num_proc,
                    remove_columns=["text"])
def group_texts(examples):
    concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
    total = len(concatenated["input_ids"]) // seq_len * seq_len
    result = {k: [t[i : i + seq_len] for i in range(0, total, seq_len)]
              for k, t in concatenated.items()}
    result["labels"] = result["input_ids"].copy()
    return result
blocks = tokenized.map(group_texts, batched=True, num_proc=num_proc)
print(json.dumps({"seconds": time.perf_counter() - started, "blocks": len(blocks)}))
"""

RAW_RUST = """
import json, sys, time
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2]).backend_tokenizer
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().split("\\n") if l.strip()]
megabytes = sum(len(l.encode()) for l in lines) / 1e6
started = time.perf_counter()
tokens = 0
for i in range(0, len(lines), 20_000):
    tokens += sum(len(e.ids) for e in tokenizer.encode_batch_fast(lines[i : i + 20_000],
                                                                   add_special_tokens=False))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "mb_per_s": megabytes / seconds, "tokens": tokens}))
"""

FIRST_STEP = """
import json, sys, time
from pathlib import Path
from transformers import TrainerCallback
from llmkit.commands.pretrain import run_pretrain
from llmkit.recipe import load_recipe
corpus, tok, cache, out = sys.argv[1:5]
marks = {}
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
class Clock(TrainerCallback):
    def on_init_end(self, args, state, control, **kw):
        marks["trainer_built"] = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 1:
            marks["first_step"] = time.perf_counter()
            marks["rss_mib"] = status("VmRSS")
recipe = load_recipe("gpt2-tiny", [f"tokenizer.path={tok}", f"data.train={corpus}",
    f"data.seq_len={sys.argv[5]}", f"data.cache_dir={cache}", "data.validation_fraction=0",
    "train.max_steps=2", "train.batch_size=8", "train.log_every=1"])
summary = run_pretrain(recipe, "clm", output_dir=Path(out), overwrite=True, callbacks=[Clock()])
print(json.dumps({"trainer_to_first_step_s": marks["first_step"] - marks["trainer_built"],
                  "rss_at_first_step_mib": marks["rss_mib"], "steps": summary["steps"]}))
"""

TOKENIZER_TRAINING = """
import json, sys, time
from llmkit.data.corpus import tokenizer_sample, peak_memory_mib
from llmkit.recipe import DataConfig, TokenizerConfig
from llmkit.tokenizer import train_tokenizer_on
config = TokenizerConfig(**({"train_bytes": int(sys.argv[2])} if len(sys.argv) > 2 else {}))
started = time.perf_counter()
sample = tokenizer_sample(DataConfig(train=sys.argv[1]), config.train_bytes, seed=42)
sampled = time.perf_counter()
tokenizer = train_tokenizer_on(sample.sample, config)
print(json.dumps({**sample.summary(), "sample_s": sampled - started,
                  "train_s": time.perf_counter() - sampled, "vocab": len(tokenizer),
                  "budget": config.train_bytes}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.2,1", help="corpus sizes in GB")
    parser.add_argument("--work", default="/tmp/llmkit-large-corpus")
    parser.add_argument(
        "--parts",
        default="ratio,sizes,run_clm,tokenizer,tokenizer-sampled",
        help="what to measure (results of the others are kept from the last run's file)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [float(s) for s in args.sizes.split(",")]
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    saved = OUT / "large_corpus.json"
    results: dict = json.loads(saved.read_text()) if saved.is_file() else {}
    results.update(seq_len=SEQ_LEN, cores=os.cpu_count())
    results.setdefault("sizes", {})

    corpora = {}
    for gb in sizes:
        corpora[gb] = work / f"corpus-{gb:g}GB.txt"
        print(f"building {corpora[gb]} ...", flush=True)
        build_corpus(corpora[gb], int(gb * 1e9))
    small = corpora[min(sizes)]

    tok = work / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        pool = work / "pool.txt"
        pool.write_text("\n".join(real_lines()), encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "llmkit", "tokenize", "--recipe", "tokenizer-byte-bpe",
             "--set", f"data.train={pool}", "-o", str(tok), "--overwrite"],
            cwd=ROOT, check=True, env={**os.environ, **env}, capture_output=True,
        )  # fmt: skip

    def tokenize(gb: float) -> dict:
        cache, hf_cache = work / f"cache-{gb:g}", work / f"hf-cache-{gb:g}"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(hf_cache, ignore_errors=True)
        command = [
            sys.executable, "-m", "llmkit", "tokenize", "--recipe", "tokenizer-byte-bpe",
            "--set", f"tokenizer.path={tok}", "--set", f"data.train={corpora[gb]}",
            "--set", "data.encode=true", "--set", f"data.seq_len={SEQ_LEN}",
            "--set", f"data.cache_dir={cache}", "-o", str(work / f"tok-run-{gb:g}"),
            "--overwrite", "--json",
        ]  # fmt: skip
        run = measured(command, {**env, "HF_DATASETS_CACHE": str(hf_cache)})
        metrics = run["result"]
        corpus_mb = corpora[gb].stat().st_size / 1e6
        figures = {
            "corpus_mb": corpus_mb,
            "tokens": metrics["tokens"],
            "blocks": metrics["blocks"],
            "wall_s": run["wall_s"],
            "mb_per_s_wall": corpus_mb / run["wall_s"],
            "mb_per_s_encode": metrics["encode_mb_per_s"],
            "peak_rss_mib_tree": run["peak_mib"],
            "peak_rss_mib_reported": metrics["peak_rss_mib"],
            "block_cache_mib": disk_mib(cache),
            "datasets_cache_mib": disk_mib(hf_cache),
        }
        print(f"llmkit tokenize {gb:g} GB:", figures, flush=True)
        return figures

    def raw_rust() -> dict:
        raw = measured([*PY, RAW_RUST, str(small), str(tok)], env)
        print("raw Rust batch encoder:", raw["result"], flush=True)
        return {**raw["result"], "peak_mib": raw["peak_mib"]}

    small_run = None
    if "ratio" in parts:  # side by side: raw, llmkit, llmkit, raw
        runs = [raw_rust(), tokenize(min(sizes)), tokenize(min(sizes)), raw_rust()]
        results["raw_rust"], results["small_runs"], small_run = runs[0::3], runs[1:3], runs[2]
        results["llmkit_over_raw"] = [
            runs[1]["mb_per_s_encode"] / runs[0]["mb_per_s"],
            runs[2]["mb_per_s_encode"] / runs[3]["mb_per_s"],
        ]
        print("llmkit / raw Rust:", results["llmkit_over_raw"], flush=True)

    if "sizes" in parts:
        for gb in sizes:
            figures = small_run if gb == min(sizes) and small_run else tokenize(gb)
            first = measured(
                [*PY, FIRST_STEP, str(corpora[gb]), str(tok), str(work / f"cache-{gb:g}"),
                 str(work / f"pretrain-{gb:g}"), str(SEQ_LEN)],
                env,
            )  # fmt: skip
            figures["pretrain"] = first["result"]
            results["sizes"][f"{gb:g}"] = figures
            print(f"pretrain-clm on {gb:g} GB:", first["result"], flush=True)

    if "run_clm" in parts:
        for workers in ("default", "2"):
            hf_cache = work / "hf-cache-run-clm"
            shutil.rmtree(hf_cache, ignore_errors=True)
            clm_env = {**env, "HF_DATASETS_CACHE": str(hf_cache)}
            clm = measured([*PY, RUN_CLM, str(small), str(tok), str(SEQ_LEN), workers], clm_env)
            results[f"run_clm_{workers}"] = {
                **clm["result"],
                "wall_s": clm["wall_s"],
                "mb_per_s_wall": small.stat().st_size / 1e6 / clm["wall_s"],
                "peak_rss_mib_tree": clm["peak_mib"],
                "datasets_cache_mib": disk_mib(hf_cache),
            }
            print(f"run_clm way ({workers}):", results[f"run_clm_{workers}"], flush=True)
            shutil.rmtree(hf_cache, ignore_errors=True)

    # The default budget, and a quarter of the corpus (the sampling path: drawn evenly).
    budgets = {"tokenizer": [], "tokenizer-sampled": [str(int(max(sizes) * 1e9 // 4))]}
    for part, budget in budgets.items():
        if part not in parts:
            continue
        training = measured([*PY, TOKENIZER_TRAINING, str(corpora[max(sizes)]), *budget], env)
        key = part.replace("-", "_").replace("tokenizer", "tokenizer_training")
        results[key] = {
            **training["result"],
            "wall_s": training["wall_s"],
            "peak_rss_mib_tree": training["peak_mib"],
        }
        print(f"{part}:", results[key], flush=True)

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "large_corpus.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

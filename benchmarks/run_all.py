"""`make bench`: every llmkit command against the plain Hugging Face way, and how cost grows.

Prepares the shared inputs once (a 10 MB real-text corpus, tokenizers, the tiny model
configs, a trained gpt2-tiny and bert-tiny), runs each comparison in fresh alternating
processes (benchmarks/harness.py), checks that both ways reach the same result, prints the
table with the targets, and writes benchmarks/out/results.json, results.md and scaling.png.

    python -m benchmarks.run_all [--only tokenize,pretrain-clm,...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.harness import OUT, ROOT, SHARED_DATA, WIKITEXT_VALID, compare

# name: (module, metric, higher is better, target ratio, how the target reads)
BENCHMARKS = {
    "tokenize": ("tokenize_pack", "MB/s", True, 2.0, "≥ 2×"),
    "pretrain-clm": ("pretrain", "tokens/s", True, 1.5, "≥ 1.5×"),
    "pretrain-mlm": ("pretrain", "tokens/s", True, 1.5, "≥ 1.5×"),
    "finetune-sst2": ("finetune_glue", "wall s", False, 0.2, "≤ 0.2×"),
    "eval-ppl": ("eval_ppl", "tokens/s", True, 3.0, "≥ 3×"),
    # the whole command (start-up included) against the guide's script as a whole
    "eval-ppl-command": ("eval_ppl_command", "tokens/s of wall time", True, 3.0, "≥ 3×"),
    "generate": ("generate", "new tokens/s", True, None, "reported"),
}


def corpus_text(megabytes: float) -> str:
    """Real text of about `megabytes`: WikiText and Shakespeare when present, and WikiText-2
    valid (a test fixture)."""
    files = [SHARED_DATA / "wikitext-2" / "test.txt", SHARED_DATA / "tinyshakespeare" / "input.txt"]
    parts = [f.read_text(encoding="utf-8") for f in files if f.is_file()]
    parts.append(WIKITEXT_VALID.read_text(encoding="utf-8"))
    text = "".join(parts)
    return text * max(1, round(megabytes * 1e6 / len(text.encode())))


def wikitext_test() -> Path:
    """Raw WikiText-2 test (the shared copy), else the repository's slice of it."""
    shared = SHARED_DATA / "wikitext-2-raw-hfrows" / "wiki.test.raw"
    return (
        shared if shared.is_file() else ROOT / "tests" / "fixtures" / "wikitext-2-raw-test-head.raw"
    )


def prepare(work: Path, quick: bool, models: bool) -> dict:
    """The inputs both ways share, made with llmkit once."""
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.models import build_model_config, special_token_ids
    from llmkit.recipe import TokenizerConfig, load_recipe
    from llmkit.tokenizer import save_tokenizer, train_tokenizer

    def lines():
        with open(WIKITEXT_VALID, encoding="utf-8") as handle:
            rows = [row for row in handle.read().splitlines() if row.strip()]
        yield from (rows[i : i + 1000] for i in range(0, len(rows), 1000))

    corpus = work / "corpus-10mb.txt"
    corpus.write_text(corpus_text(2 if quick else 10), encoding="utf-8")
    paths = {"corpus": str(corpus), "wikitext-valid": str(WIKITEXT_VALID)}
    tokenizers = {
        "tokenize": (TokenizerConfig(vocab_size=8192), None),
        "clm": (load_recipe("gpt2-tiny").tokenizer, "gpt2"),
        "mlm": (load_recipe("bert-tiny").tokenizer, "bert"),
    }
    for name, (config, family) in tokenizers.items():
        tokenizer = train_tokenizer(lines(), config, family=family)
        save_tokenizer(tokenizer, work / f"tokenizer-{name}")
        paths[f"tokenizer-{name}"] = str(work / f"tokenizer-{name}")
        if family:
            recipe = load_recipe(f"{family}-tiny")
            build_model_config(
                recipe.model,
                tokens=len(tokenizer),
                seq_len=recipe.data.seq_len,
                special_ids=special_token_ids(tokenizer),
            ).save_pretrained(work / f"config-{name}")
            paths[f"config-{name}"] = str(work / f"config-{name}")
    os.environ["LLMKIT_CACHE"] = str(work / "cache")
    for objective, family in (("clm", "gpt2"), ("mlm", "bert")) if models else ():
        recipe = load_recipe(
            f"{family}-tiny",
            [f"tokenizer.path={paths[f'tokenizer-{objective}']}", "train.max_steps=300"],
        )
        run_pretrain(recipe, objective, output_dir=work / f"model-{objective}")
        paths[f"model-{objective}"] = str(work / f"model-{objective}")
    return paths


def prompts(count: int) -> list[str]:
    """The first words of WikiText paragraphs."""
    rows = wikitext_test().read_text(encoding="utf-8").splitlines()
    paragraphs = [r.strip() for r in rows if len(r.split()) > 20 and not r.strip().startswith("=")]
    return [" ".join(p.split()[:8]) for p in paragraphs[:count]]


def options_for(name: str, paths: dict, quick: bool) -> tuple[dict, int]:
    """(options, rounds) of one comparison."""
    from benchmarks.finetune_glue import data_files

    steps = 40 if quick else 200
    if name == "tokenize":
        return {
            "corpus": paths["corpus"],
            "tokenizer": paths["tokenizer-tokenize"],
            "seq_len": 512,
        }, 3
    if name in ("pretrain-clm", "pretrain-mlm"):
        objective = name.split("-")[1]
        return {
            "objective": objective,
            "corpus": paths["wikitext-valid"],
            "tokenizer": paths[f"tokenizer-{objective}"],
            "config": paths[f"config-{objective}"],
            "steps": steps,
        }, 3
    if name == "finetune-sst2":
        train_file, dev_file = data_files()
        examples = 2000 if quick else 8000
        return {
            "model": paths["model-mlm"],
            "train_file": str(train_file),
            "dev_file": str(dev_file),
            "examples": examples,
        }, 2
    if name in ("eval-ppl", "eval-ppl-command"):
        return {
            "model": paths["model-clm"],
            "text": str(wikitext_test()),
            "max_length": 128,
            "stride": 64,
        }, 3
    return {"model": paths["model-clm"], "prompts": prompts(16), "max_new_tokens": 64}, 3


def quality(name: str, comparison) -> tuple[bool, str]:
    """Whether both ways reached the same result, and how close they were."""
    llmkit, plain = comparison.runs["llmkit"][-1], comparison.runs["plain HF"][-1]
    if name == "tokenize":
        # run_clm drops under seq_len tokens per 1,000-row batch; llmkit under seq_len in all.
        allowed = (-(-plain["rows"] // 1000) + 1) * 512
        difference = llmkit["tokens"] - plain["tokens"]
        return 0 <= difference <= allowed, (
            f"{llmkit['tokens']:,} vs {plain['tokens']:,} text tokens "
            f"(llmkit keeps {difference:,} that run_clm's batches drop; ≤ {allowed:,})"
        )
    if name.startswith("pretrain"):
        difference = abs(llmkit["train_loss"] - plain["train_loss"])
        return difference <= 0.15, (
            f"train loss {llmkit['train_loss']:.3f} vs {plain['train_loss']:.3f} (≤ 0.15 apart)"
        )
    if name == "finetune-sst2":
        difference = abs(llmkit["accuracy"] - plain["accuracy"])
        return difference <= 0.03, (
            f"dev accuracy {llmkit['accuracy']:.3f} vs {plain['accuracy']:.3f} (≤ 0.03 apart)"
        )
    if name in ("eval-ppl", "eval-ppl-command"):
        difference = abs(llmkit["perplexity"] / plain["perplexity"] - 1)
        return difference <= 1e-5, (
            f"perplexity {llmkit['perplexity']:.4f} vs {plain['perplexity']:.4f} "
            f"(rel. {difference:.1e})"
        )
    same = sum(a == b for a, b in zip(llmkit["completions"], plain["completions"], strict=True))
    share = same / len(plain["completions"])
    return share >= 0.9, f"{same}/{len(plain['completions'])} greedy completions identical"


def markdown(rows: list[dict], machine: str) -> str:
    lines = [
        f"Machine: {machine}. Date: {date.today()}. Command: `make bench`.",
        "",
        "| benchmark | metric | llmkit | plain HF | ratio (median) | min–max | target | "
        "met | quality | peak MiB llmkit / plain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['metric']} | {r['llmkit']:,.2f} | {r['plain HF']:,.2f} | "
            f"{r['ratio']:.2f}× | {r['ratio_min']:.2f}–{r['ratio_max']:.2f} | {r['target']} | "
            f"{r['met']} | {r['quality']} | {r['llmkit_peak_mib']:,.0f} / "
            f"{r['plain_peak_mib']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated: " + ",".join([*BENCHMARKS, "scaling"]))
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    args = parser.parse_args()
    from llmkit.cli import quiet_libraries

    quiet_libraries()
    chosen = args.only.split(",") if args.only else [*BENCHMARKS, "scaling"]
    started = time.perf_counter()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU"
    rows, results = [], {"machine": machine, "date": str(date.today())}
    with tempfile.TemporaryDirectory() as tmp:
        print("preparing shared inputs (corpus, tokenizers, tiny models) ...", flush=True)
        needs_models = {"finetune-sst2", "eval-ppl", "eval-ppl-command", "generate", "scaling"}
        needs_models = bool(needs_models & set(chosen))
        paths = prepare(Path(tmp), args.quick, needs_models)
        for name in [n for n in chosen if n in BENCHMARKS]:
            module, metric, higher, target, target_text = BENCHMARKS[name]
            options, rounds = options_for(name, paths, args.quick)
            print(f"{name}:", flush=True)
            comparison = compare(module, name, metric, rounds=rounds, options=options)
            row = comparison.row()
            ok, how = quality(name, comparison)
            met = (
                "—"
                if target is None
                else "yes"
                if (row["ratio"] >= target if higher else row["ratio"] <= target)
                else "no"
            )
            row.update(target=target_text, met=met, quality=("✓ " if ok else "✗ ") + how)
            rows.append(row)
            save(results, rows, machine)  # what is measured is kept, whatever comes next
        if "scaling" in chosen:
            from benchmarks.scaling import curves

            print("scaling:", flush=True)
            results["scaling"] = curves(
                paths["wikitext-valid"],
                paths["tokenizer-clm"],
                paths["model-clm"],
                str(wikitext_test()),
            )
    results["minutes"] = (time.perf_counter() - started) / 60
    table = save(results, rows, machine)
    print()
    print(table)
    print(f"{results['minutes']:.1f} minutes; results in {OUT}/")


def save(results: dict, rows: list[dict], machine: str) -> str:
    """Write results.json and results.md; returns the Markdown table."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({**results, "comparisons": rows}, indent=2))
    table = markdown(rows, machine)
    (OUT / "results.md").write_text(table)
    return table


if __name__ == "__main__":
    main()

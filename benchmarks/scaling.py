"""How cost grows: pretrain-clm as the model and the sequence grow, eval-ppl as the text grows.

Each point runs in a fresh process (its peak memory is its own): `run_pretrain` on the
built-in corpus for a few steps (tokens/s as Trainer times the steps), or llmkit's token
perplexity over the first N tokens of WikiText. `curves` runs them all and draws
benchmarks/out/scaling.png.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.harness import OUT, run_way, way_main

# (label, layers, hidden, heads): gpt2-tiny up to GPT-2 small.
MODEL_SIZES = [
    ("tiny", 2, 128, 4),
    ("mini", 4, 256, 4),
    ("medium", 6, 512, 8),
    ("small", 12, 768, 12),
]
SEQ_LENS = [128, 256, 512, 1024]
TEXT_TOKENS = [10_000, 40_000, 160_000]


def clm_point(options: dict) -> dict:
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.recipe import load_recipe

    overrides = [
        f"data.train={options['corpus']}",
        f"tokenizer.path={options['tokenizer']}",
        f"model.layers={options['layers']}",
        f"model.hidden={options['hidden']}",
        f"model.heads={options['heads']}",
        f"data.seq_len={options['seq_len']}",
        f"train.batch_size={options['batch_size']}",
        f"train.max_steps={options['steps']}",
        "data.validation_fraction=0",
        "train.eval_every=null",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMKIT_CACHE"] = f"{tmp}/cache"
        recipe = load_recipe("gpt2-tiny", overrides)
        summary = run_pretrain(recipe, "clm", output_dir=Path(tmp) / "run")
    return {"value": summary["tokens_per_second"], "parameters": summary["parameters"]}


def ppl_point(options: dict) -> dict:
    from benchmarks.eval_ppl import _ids
    from llmkit.models import load_for_inference
    from llmkit.perplexity import token_perplexity

    model, tokenizer, _ = load_for_inference(options["model"], "fp32")
    ids = _ids(options, tokenizer)[: options["tokens"]]
    started = time.perf_counter()
    result = token_perplexity(model, ids, max_length=128, stride=64, batch_size=8, pad_id=0)
    return {"value": result.tokens / (time.perf_counter() - started)}


def curves(corpus: str, tokenizer: str, model: str, text: str) -> dict:
    common = {"corpus": corpus, "tokenizer": tokenizer}
    by_size = []
    for label, layers, hidden, heads in MODEL_SIZES:
        steps = 4 if label == "small" else 10
        point = {"layers": layers, "hidden": hidden, "heads": heads, "seq_len": 128}
        result = run_way("scaling", "clm", {**common, **point, "batch_size": 8, "steps": steps})
        by_size.append({"model": label, **result})
        print(f"  model {label}: {result['value']:,.0f} tok/s, {result['peak_mib']:,.0f} MiB")
    by_seq = []
    for seq_len in SEQ_LENS:
        point = {"layers": 2, "hidden": 128, "heads": 4, "seq_len": seq_len, "batch_size": 4}
        result = run_way("scaling", "clm", {**common, **point, "steps": 10})
        by_seq.append({"seq_len": seq_len, **result})
        print(f"  seq_len {seq_len}: {result['value']:,.0f} tok/s, {result['peak_mib']:,.0f} MiB")
    by_text = []
    for tokens in TEXT_TOKENS:
        result = run_way("scaling", "ppl", {"model": model, "text": text, "tokens": tokens})
        by_text.append({"tokens": tokens, **result})
        print(f"  eval-ppl {tokens:,} tokens: {result['value']:,.0f} tok/s")
    curves = {"model_size": by_size, "seq_len": by_seq, "text": by_text}
    plot(curves, OUT / "scaling.png")
    return curves


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [
        ("model_size", "parameters", "pretrain-clm: model size (seq 128)", True),
        ("seq_len", "seq_len", "pretrain-clm: sequence length (gpt2-tiny)", True),
        ("text", "tokens", "eval-ppl: text length (gpt2-tiny)", True),
    ]
    for axis, (key, x, title, log_x) in zip(axes, panels, strict=True):
        xs = [point[x] for point in curves[key]]
        axis.plot(xs, [point["value"] for point in curves[key]], "o-", color="tab:blue")
        axis.set_xlabel(x)
        axis.set_ylabel("tokens/s", color="tab:blue")
        axis.set_title(title)
        if log_x:
            axis.set_xscale("log")
        axis.set_yscale("log")
        memory = axis.twinx()
        memory.plot(xs, [point["peak_mib"] for point in curves[key]], "s--", color="tab:red")
        memory.set_ylabel("peak memory (MiB)", color="tab:red")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"  plot: {path}")


WAYS = {"clm": clm_point, "ppl": ppl_point}

if __name__ == "__main__":
    way_main(WAYS)

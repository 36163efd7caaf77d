"""`llmkit eval-ppl`: token, word and byte perplexity (CLM) or pseudo-perplexity (MLM)."""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import datasets

from llmkit.console import progress_bar
from llmkit.data.documents import build_documents, count_words, is_structured, is_wikitext
from llmkit.data.sources import load_files, load_source, select_text
from llmkit.errors import UserError, did_you_mean
from llmkit.models import load_for_inference, model_positions
from llmkit.perplexity import (
    document_log_likelihoods,
    document_prefix_id,
    pseudo_log_likelihood,
    token_perplexity,
)


def text_rows(dataset: datasets.Dataset, text_column: str | None, where: str) -> list[str]:
    """The text of each row: `text_column`, or `text`, or the only string column there is."""
    if text_column is None:
        strings = [
            name
            for name, feature in dataset.features.items()
            if getattr(feature, "dtype", None) in ("string", "large_string")
        ]
        text_column = "text" if "text" in strings else (strings[0] if len(strings) == 1 else None)
        if text_column is None:
            raise UserError(
                f"{where} has several text columns ({', '.join(strings)}) and none is named 'text'",
                "choose one with --text-column",
            )
    return [row or "" for row in select_text(dataset, text_column, where=where)["text"]]


def check_window(max_length: int | None, stride: int | None, positions: int) -> tuple[int, int]:
    max_length = positions if max_length is None else max_length
    if not 2 <= max_length <= positions:
        raise UserError(
            f"--max-length {max_length} is outside 2..{positions} (the model's positions)",
            f"use at most {positions}",
        )
    stride = max(1, max_length // 2) if stride is None else stride
    if not 1 <= stride <= max_length:
        raise UserError(f"--stride {stride} must be between 1 and --max-length ({max_length})")
    return max_length, stride


# What --metrics may ask for, by what the model does; each pass computes only what is asked.
FIGURES = {
    "clm": ("token", "word", "byte", "bpb"),  # token: the sliding pass; the rest: documents
    "mlm": ("pseudo",),
}
DOCUMENT_FIGURES = {"word": "word_perplexity", "byte": "byte_perplexity", "bpb": "bits_per_byte"}


def chosen_figures(metrics: str | None, modeling: str | None) -> list[str]:
    """--metrics token,word,byte,bpb (default: all the model has), checked against it (or,
    before the model is loaded, `modeling` None, against every figure there is)."""
    available = FIGURES[modeling] if modeling else [f for fs in FIGURES.values() for f in fs]
    if metrics is None:
        return list(available)
    chosen = [name.strip() for name in metrics.split(",") if name.strip()]
    for name in chosen:
        if name not in available:
            kind = {"clm": "a causal LM", "mlm": "a masked LM"}.get(modeling, "eval-ppl")
            raise UserError(
                f"--metrics: '{name}' is not a figure of {kind}{did_you_mean(name, available)}",
                f"choose among: {','.join(available)}",
            )
    if not chosen:
        raise UserError("--metrics names no figure", f"choose among: {','.join(available)}")
    return chosen


def run_eval_ppl(
    model_dir: str | Path,
    data: str,
    *,
    split: str = "test",
    text_column: str | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 16,
    precision: str = "fp32",
    detokenize: bool | None = None,
    local_dir: str | None = None,
    metrics: str | None = None,
    output: Path | None = None,
) -> dict[str, Any]:
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    chosen_figures(metrics, None)  # a misspelt figure fails before the model loads
    model, tokenizer, modeling = load_for_inference(model_dir, precision)
    if modeling == "seq2seq":
        raise UserError(
            f"{model_dir} is an encoder-decoder model; eval-ppl scores causal and masked LMs",
            "its fine-tuning run reports eval_loss on the task's references (metrics.json)",
        )
    figures = chosen_figures(metrics, modeling)
    max_length, stride = check_window(max_length, stride, model_positions(model.config))
    dataset, source = load_source(data, split=split, local_dir=local_dir, local_key="--local-dir")
    rows = text_rows(dataset, text_column, source.description)
    stream = "\n\n".join(rows)  # the HF guide's stream (WikiText's rows joined by blank lines)
    results: dict[str, Any] = {
        "command": "eval-ppl",
        "model": str(model_dir),
        "data": source.description,
        "objective": modeling,
        "max_length": max_length,
        "batch_size": batch_size,
    }
    progress = progress_bar()
    started = time.perf_counter()
    with progress:
        if modeling == "mlm":
            ids = tokenizer(stream, add_special_tokens=False)["input_ids"]
            task = progress.add_task("pseudo-perplexity (tokens)", total=len(ids))
            scored = pseudo_log_likelihood(
                model,
                ids,
                cls_id=tokenizer.cls_token_id,
                sep_id=tokenizer.sep_token_id,
                mask_id=tokenizer.mask_token_id,
                max_length=max_length,
                batch_size=batch_size,
                on_window=lambda n: progress.advance(task, n),
            )
            results.update(pseudo_perplexity=scored.perplexity, tokens=scored.tokens)
            scoring_seconds = time.perf_counter() - started
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # how both passes cut and batch their windows
        windows = {"max_length": max_length, "batch_size": batch_size, "pad_id": pad_id}
        if "token" in figures:
            ids = tokenizer(stream)["input_ids"]
            task = progress.add_task("token perplexity (tokens)", total=max(len(ids) - 1, 0))
            advance = functools.partial(progress.advance, task)
            scored = token_perplexity(model, ids, stride=stride, on_window=advance, **windows)
            results.update(
                stride=stride,
                token_perplexity=scored.perplexity,
                token_nll=scored.nll / scored.tokens,
                tokens=scored.tokens,
                windows=scored.windows,
            )
            scoring_seconds = time.perf_counter() - started
        documents = [DOCUMENT_FIGURES[name] for name in figures if name in DOCUMENT_FIGURES]
        if documents:
            document_figures = _document_perplexities(
                model, tokenizer, rows, data, source, detokenize, windows, progress
            )
            unasked = set(DOCUMENT_FIGURES.values()) - set(documents)
            results.update({k: v for k, v in document_figures.items() if k not in unasked})
    results["seconds"] = time.perf_counter() - started  # every pass asked for
    if "tokens" in results:  # the token (or pseudo-perplexity) pass's own speed
        results["tokens_per_second"] = results["tokens"] / scoring_seconds
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(results, indent=2) + "\n")
    return results


def _document_perplexities(
    model, tokenizer, rows, data, source, detokenize, windows, progress
) -> dict[str, Any]:
    """Word and byte perplexity and bits per byte, as lm-evaluation-harness computes them."""
    wikitext = is_wikitext(data, source)
    detokenize = wikitext if detokenize is None else detokenize
    per_file = [rows]
    if not is_structured(source) and not wikitext and len(source.files) > 1:
        # each file of a folder of plain text is a document of its own
        per_file = [text_rows(load_files((path,)), None, str(path)) for path in source.files]
    documents = [
        document
        for file_rows in per_file
        for document in build_documents(
            file_rows, structured=is_structured(source), wikitext=wikitext, detokenize=detokenize
        )
    ]
    prefix_id = document_prefix_id(tokenizer)
    encoded = tokenizer([d.scored for d in documents], add_special_tokens=False)["input_ids"]
    task = progress.add_task("word/byte perplexity (tokens)", total=sum(map(len, encoded)))
    advance = functools.partial(progress.advance, task)
    log_likelihood = sum(
        document_log_likelihoods(model, encoded, prefix_id=prefix_id, on_window=advance, **windows)
    )
    words = sum(count_words(d.text) for d in documents)
    utf8_bytes = sum(len(d.text.encode("utf-8")) for d in documents)
    return {
        "word_perplexity": math.exp(-log_likelihood / words),
        "byte_perplexity": math.exp(-log_likelihood / utf8_bytes),
        "bits_per_byte": -log_likelihood / utf8_bytes / math.log(2),
        "documents": len(documents),
        "words": words,
        "bytes": utf8_bytes,
        "detokenized": detokenize,
    }

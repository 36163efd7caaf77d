"""`llmkit eval-ppl`: token, word and byte perplexity (CLM) or pseudo-perplexity (MLM)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import datasets

from llmkit.console import progress_bar
from llmkit.data.documents import build_documents, count_words, is_structured, is_wikitext
from llmkit.data.sources import load_source, select_text
from llmkit.errors import UserError
from llmkit.models import load_for_inference, model_positions
from llmkit.perplexity import document_log_likelihoods, pseudo_log_likelihood, token_perplexity


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
    max_length = max_length or positions
    if not 2 <= max_length <= positions:
        raise UserError(
            f"--max-length {max_length} is outside 2..{positions} (the model's positions)",
            f"use at most {positions}",
        )
    stride = stride or max(1, max_length // 2)
    if not 1 <= stride <= max_length:
        raise UserError(f"--stride {stride} must be between 1 and --max-length ({max_length})")
    return max_length, stride


def run_eval_ppl(
    model_dir: str,
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
    output: Path | None = None,
) -> dict[str, Any]:
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    model, tokenizer, modeling = load_for_inference(model_dir, precision)
    if modeling == "seq2seq":
        raise UserError(
            f"{model_dir} is an encoder-decoder model; eval-ppl scores causal and masked LMs",
            "its fine-tuning run reports eval_loss on the task's references (metrics.json)",
        )
    max_length, stride = check_window(max_length, stride, model_positions(model.config))
    dataset, source = load_source(
        data, split=split, local_dir=local_dir, local_flag="--local-dir DIR"
    )
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
    with progress:
        if modeling == "mlm":
            ids = tokenizer(stream, add_special_tokens=False)["input_ids"]
            task = progress.add_task("pseudo-perplexity (tokens)", total=len(ids))
            started = time.perf_counter()
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
            seconds = time.perf_counter() - started
            results.update(pseudo_perplexity=scored.perplexity, tokens=scored.tokens)
        else:
            ids = tokenizer(stream)["input_ids"]
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            task = progress.add_task("token perplexity (tokens)", total=max(len(ids) - 1, 0))
            started = time.perf_counter()
            scored = token_perplexity(
                model,
                ids,
                max_length=max_length,
                stride=stride,
                batch_size=batch_size,
                pad_id=pad_id,
                on_window=lambda n: progress.advance(task, n),
            )
            seconds = time.perf_counter() - started
            results.update(
                stride=stride,
                token_perplexity=scored.perplexity,
                token_nll=scored.nll / scored.tokens,
                tokens=scored.tokens,
                windows=scored.windows,
            )
            results.update(
                _document_perplexities(
                    model,
                    tokenizer,
                    rows,
                    data,
                    source,
                    detokenize,
                    max_length,
                    batch_size,
                    pad_id,
                    progress,
                )
            )
    results.update(seconds=seconds, tokens_per_second=scored.tokens / seconds if seconds else 0.0)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(results, indent=2) + "\n")
    return results


def _document_perplexities(
    model, tokenizer, rows, data, source, detokenize, max_length, batch_size, pad_id, progress
) -> dict[str, Any]:
    """Word and byte perplexity and bits per byte, as lm-evaluation-harness computes them."""
    wikitext = is_wikitext(data, source)
    detokenize = wikitext if detokenize is None else detokenize
    documents = build_documents(
        rows, structured=is_structured(source), wikitext=wikitext, detokenize=detokenize
    )
    prefix_id = (
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    )
    if prefix_id is None:
        raise UserError(
            "the tokenizer has neither an EOS nor a BOS token to predict a document's first "
            "token from"
        )
    encoded = tokenizer([d.scored for d in documents], add_special_tokens=False)["input_ids"]
    task = progress.add_task("word/byte perplexity (tokens)", total=sum(map(len, encoded)))
    log_likelihood = sum(
        document_log_likelihoods(
            model,
            encoded,
            prefix_id=prefix_id,
            max_length=max_length,
            batch_size=batch_size,
            pad_id=pad_id,
            on_window=lambda n: progress.advance(task, n),
        )
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

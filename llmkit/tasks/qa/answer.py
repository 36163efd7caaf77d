"""Answering a question with a loaded extractive QA model: the context cut into overlapping
windows exactly as in fine-tuning and evaluation (with the run's own window, stride and answer
length when it is a qa/squad run), and the best span over all windows. `llmkit answer` and
the server's /v1/answer both call `answer_with`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmkit.data.collators import DynamicPaddingCollator
from llmkit.errors import UserError
from llmkit.models import model_positions
from llmkit.recipe import read_yaml_mapping
from llmkit.tasks.qa.data import Windows, best_answers, prediction_windows

DEFAULT_WINDOW = 384  # tokens, as SQuAD fine-tuning uses
WINDOWS_PER_BATCH = 32


def fine_tuning_settings(folder: Path) -> dict[str, int]:
    """The window, stride and answer length a qa/squad run was evaluated with (from its
    recipe.yaml), so that `answer` cuts contexts as that evaluation did; empty otherwise."""
    path = folder / "recipe.yaml"
    if not path.is_file():
        return {}
    task = read_yaml_mapping(path).get("task") or {}
    if task.get("name") != "qa/squad":
        return {}
    keys = ("max_length", "doc_stride", "max_answer_tokens")
    return {key: task[key] for key in keys if isinstance(task.get(key), int)}


@torch.inference_mode()
def answer_with(
    model,
    tokenizer,
    trained: dict[str, int],
    question: str,
    context: str,
    *,
    top_k: int = 1,
    max_answer_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
) -> dict[str, Any]:
    """The best spans of `context` answering `question`, by a loaded QA model (`llmkit answer`
    and the server's /v1/answer); `trained` is its run's fine_tuning_settings."""
    if not question.strip():
        raise UserError("the question is empty")
    if not context.strip():
        raise UserError("the context is empty")
    for flag, value, least in (
        ("--top-k", top_k, 1),
        ("--max-answer-tokens", max_answer_tokens, 1),
        ("--max-length", max_length, 8),
        ("--doc-stride", stride, 1),
    ):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}")
    positions = model_positions(model.config)
    length = min(max_length or trained.get("max_length") or DEFAULT_WINDOW, positions)
    windows = Windows(max_length=length, stride=stride or trained.get("doc_stride") or length // 4)
    max_answer_tokens = max_answer_tokens or trained.get("max_answer_tokens") or 30
    encoded = prediction_windows(
        {"question": [question], "context": [context]}, tokenizer, windows, ["q"]
    )
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    columns = [encoded[k] for k in keys]
    rows = [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
    pad = DynamicPaddingCollator(tokenizer)
    starts, ends = [], []
    for first in range(0, len(rows), WINDOWS_PER_BATCH):
        output = model(**pad(rows[first : first + WINDOWS_PER_BATCH]))
        # windows padded to different lengths: keep each one's real positions only
        starts += list(output.start_logits.float().numpy())
        ends += list(output.end_logits.float().numpy())
    found = best_answers(
        {"q": context},
        encoded["example_id"],
        encoded["offset_mapping"],
        starts,
        ends,
        max_answer_tokens=max_answer_tokens,
        top_k=top_k,
    )["q"]
    answers = [{"answer": a.text, "score": a.score, "start": a.start, "end": a.end} for a in found]
    return {
        "question": question,
        "answer": answers[0]["answer"],
        "score": answers[0]["score"],
        "windows": len(encoded["input_ids"]),
        "window_tokens": windows.max_length,
        "doc_stride": windows.stride,
        "answers": answers,
    }

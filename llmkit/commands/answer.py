"""`llmkit answer`: extract the answer to a question from a context with a fine-tuned
extractive QA model (e.g. one from `llmkit finetune --recipe qa-squad`).

Long contexts are cut into overlapping windows exactly as in fine-tuning and evaluation
(with the run's own window, stride and answer length when it is a qa/squad run), and the
best span over all windows wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForQuestionAnswering

from llmkit.checkpoints import require_model_dir
from llmkit.data.collators import DynamicPaddingCollator
from llmkit.errors import UserError
from llmkit.models import load_pretrained, model_positions
from llmkit.recipe import read_yaml_mapping
from llmkit.tasks.qa.data import Windows, best_answers, prediction_windows
from llmkit.tokenizer import load_tokenizer

DEFAULT_WINDOW = 384  # tokens, as SQuAD fine-tuning uses
WINDOWS_PER_BATCH = 32


def read_context(context: str | None, context_file: Path | None) -> str:
    if (context is None) == (context_file is None):
        raise UserError("give the context either with --context or with --context-file")
    if context_file is not None:
        if not Path(context_file).is_file():
            raise UserError(f"context file {context_file} does not exist")
        try:
            context = Path(context_file).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"context file {context_file} is not UTF-8 text") from e
    if not context.strip():
        raise UserError("the context is empty")
    return context


def load_qa_model(model_dir: str):
    folder = require_model_dir(model_dir, "--model")
    config = AutoConfig.from_pretrained(folder)
    if not any(a.endswith("ForQuestionAnswering") for a in config.architectures or []):
        raise UserError(
            f"{model_dir} is not an extractive QA model ({', '.join(config.architectures or [])})",
            "fine-tune one first: llmkit finetune --recipe qa-squad --set model.path=...",
        )
    model = load_pretrained(folder, AutoModelForQuestionAnswering)
    return model.eval(), load_tokenizer(folder)


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
def answer_from_flags(
    model_dir: str | Path,
    question: str,
    *,
    context: str | None = None,
    context_file: Path | None = None,
    **values: Any,
) -> dict[str, Any]:
    """`llmkit answer`'s flags: the context from --context or --context-file."""
    return run_answer(str(model_dir), question, read_context(context, context_file), **values)


def run_answer(
    model_dir: str,
    question: str,
    context: str,
    *,
    top_k: int = 1,
    max_answer_tokens: int | None = None,
    max_length: int | None = None,
    stride: int | None = None,
) -> dict[str, Any]:
    if not question.strip():
        raise UserError("the question is empty")
    for flag, value, least in (
        ("--top-k", top_k, 1),
        ("--max-answer-tokens", max_answer_tokens, 1),
        ("--max-length", max_length, 8),
        ("--doc-stride", stride, 1),
    ):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}")
    model, tokenizer = load_qa_model(model_dir)
    trained = fine_tuning_settings(Path(model_dir))
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
        "command": "answer",
        "model": model_dir,
        "question": question,
        "answer": answers[0]["answer"],
        "score": answers[0]["score"],
        "windows": len(encoded["input_ids"]),
        "window_tokens": windows.max_length,
        "doc_stride": windows.stride,
        "answers": answers,
    }

"""`llmkit answer`: extract the answer to a question from a context with a fine-tuned
extractive QA model (e.g. one from `llmkit finetune --recipe qa-squad`).

Long contexts are cut into overlapping windows exactly as in fine-tuning and evaluation
(with the run's own window, stride and answer length when it is a qa/squad run), and the
best span over all windows wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForQuestionAnswering

from llmkit.checkpoints import require_model_dir
from llmkit.errors import UserError
from llmkit.models import load_pretrained
from llmkit.tasks.qa.answer import answer_with, fine_tuning_settings
from llmkit.tokenizer import load_tokenizer


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


def run_answer(model_dir: str, question: str, context: str, **options: Any) -> dict[str, Any]:
    """`options`: answer_with's (top_k, max_answer_tokens, max_length, stride)."""
    model, tokenizer = load_qa_model(model_dir)
    settings = fine_tuning_settings(Path(model_dir))
    found = answer_with(model, tokenizer, settings, question, context, **options)
    return {"command": "answer", "model": model_dir, **found}

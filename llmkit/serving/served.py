"""The run a server serves: its model and tokenizer, loaded once, and what it can do.

A run does one thing, decided by the class it was saved as: generate text (a causal LM or an
encoder-decoder: the OpenAI endpoints), fill masks (a masked LM), or one fine-tuned task
(classify, answer, entities). Its endpoints follow from that.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from llmkit.checkpoints import require_model_dir
from llmkit.errors import UserError
from llmkit.fast_path import resolve_precision
from llmkit.models import (
    DTYPES,
    load_for_inference,
    load_pretrained,
    model_positions,
)
from llmkit.tokenizer import load_tokenizer

# The task heads `finetune` saves, and the endpoint each is served at.
TASK_HEADS = {
    "ForSequenceClassification": ("classify", AutoModelForSequenceClassification),
    "ForQuestionAnswering": ("answer", AutoModelForQuestionAnswering),
    "ForTokenClassification": ("entities", AutoModelForTokenClassification),
}
ENDPOINTS = {
    "generate": ("/v1/completions", "/v1/chat/completions"),
    "fill-mask": ("/v1/fill-mask",),
    "classify": ("/v1/classify",),
    "answer": ("/v1/answer",),
    "entities": ("/v1/entities",),
}


@dataclass
class Served:
    name: str  # the model id clients name: the run directory's name
    path: Path
    kind: str  # a key of ENDPOINTS
    model: Any
    tokenizer: Any
    positions: int
    # Task endpoints run one request at a time (generation has its own worker: the batcher).
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return ENDPOINTS[self.kind]

    def answers_to(self, model: str | None) -> bool:
        """A request names this run by its id or the path it was served from (or not at all)."""
        return model is None or model in (self.name, str(self.path))

    def describe(self) -> dict[str, Any]:
        """What the web page and GET /v1/llmkit/info show."""
        settings: dict[str, Any] = {"positions": self.positions}
        if self.kind == "generate":
            config = self.model.generation_config
            settings |= {
                "max_new_tokens": config.max_new_tokens,
                "do_sample": bool(config.do_sample),
                "temperature": config.temperature,
                "top_p": config.top_p,
                "chat_template": bool(self.tokenizer.chat_template),
            }
        if self.kind == "classify":
            settings["labels"] = list(self.model.config.id2label.values())
            settings["regression"] = self.model.config.problem_type == "regression"
        if self.kind == "fill-mask":
            settings["mask_token"] = self.tokenizer.mask_token
        return {
            "model": self.name,
            "kind": self.kind,
            "architecture": type(self.model).__name__,
            "endpoints": list(self.endpoints),
            "settings": settings,
        }


def load_served(path: Path, precision: str = "auto") -> Served:
    """The run at `path`, loaded for serving, or a UserError saying why it cannot be."""
    folder = require_model_dir(path, "--model")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the model config in {folder}: {e}") from e
    if getattr(config, "vision_config", None) is not None:
        raise UserError(f"{folder} is a vision-language model: llmkit serve serves text models")
    head = next(
        (TASK_HEADS[suffix] for a in config.architectures or [] for suffix in TASK_HEADS
         if a.endswith(suffix)),
        None,
    )  # fmt: skip
    if head is not None:
        kind, auto_class = head
        dtype = DTYPES[resolve_precision(precision, "--precision")]
        try:
            model = load_pretrained(folder, auto_class, dtype=dtype).eval()
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load the model in {folder}: {e}") from e
        tokenizer = load_tokenizer(folder)
    else:
        model, tokenizer, modeling = load_for_inference(folder, precision)
        kind = "fill-mask" if modeling == "mlm" else "generate"
    name = folder.resolve().name
    return Served(
        name, folder, kind, model, tokenizer, model_positions(model.config.get_text_config())
    )

"""The endpoints of runs that do not generate: one JSON request and answer per task kind, each
computed as the command line computes it.

- /v1/classify (sequence classification or regression, e.g. a GLUE run): each text's labels
  with their probabilities, likeliest first, or its score;
- /v1/fill-mask (a masked LM): the top-k fills of the mask, as `llmkit generate` gives them;
- /v1/answer (extractive QA): `llmkit answer`'s spans, windows and scores;
- /v1/entities (NER): the entities of a text split at whitespace into words, each word tagged
  by its first token as `finetune ner/conll` predicts, with character offsets.
"""

from __future__ import annotations

import re

import torch
from pydantic import BaseModel, ConfigDict, Field

from llmkit.errors import UserError
from llmkit.generation import fill_masks
from llmkit.serving.errors import ApiError
from llmkit.serving.served import Served
from llmkit.tasks.ner.data import OUTSIDE, word_tags
from llmkit.tasks.qa.answer import answer_with, fine_tuning_settings


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None


class ClassifyRequest(TaskRequest):
    text: str | list[str]
    text_pair: str | list[str] | None = None  # the second sentence of pair tasks (RTE, STS-B)


class FillMaskRequest(TaskRequest):
    text: str
    top_k: int = Field(5, ge=1, le=100)


class AnswerRequest(TaskRequest):
    question: str
    context: str
    top_k: int = Field(1, ge=1, le=20)


class EntitiesRequest(TaskRequest):
    text: str


def _texts(value: str | list[str], param: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not texts or any(not t.strip() for t in texts):
        raise ApiError(400, f"{param} is empty", param=param)
    return texts


@torch.inference_mode()
def classify(served: Served, request: ClassifyRequest) -> dict:
    texts = _texts(request.text, "text")
    pairs = None
    if request.text_pair is not None:
        pairs = _texts(request.text_pair, "text_pair")
        if len(pairs) != len(texts):
            raise ApiError(400, "text and text_pair differ in length", param="text_pair")
    model, config = served.model, served.model.config
    inputs = served.tokenizer(
        texts, pairs, truncation=True, max_length=served.positions, padding=True,
        return_tensors="pt",
    )  # fmt: skip
    logits = model(**inputs.to(model.device)).logits.float()
    if config.problem_type == "regression" or config.num_labels == 1:
        return {"model": served.name, "results": [{"score": row[0].item()} for row in logits]}
    results = []
    for probabilities in logits.softmax(-1):
        order = probabilities.argsort(descending=True).tolist()
        labels = [{"label": config.id2label[i], "score": probabilities[i].item()} for i in order]
        results.append({"label": labels[0]["label"], "labels": labels})
    return {"model": served.name, "results": results}


def fill_mask(served: Served, request: FillMaskRequest) -> dict:
    try:
        [record] = fill_masks(served.model, served.tokenizer, [request.text], request.top_k)
    except UserError as e:
        raise ApiError(400, e.message, param="text") from e
    return {"model": served.name, **record}


def answer(served: Served, request: AnswerRequest) -> dict:
    settings = fine_tuning_settings(served.path)
    try:
        found = answer_with(
            served.model, served.tokenizer, settings, request.question, request.context,
            top_k=request.top_k,
        )  # fmt: skip
    except UserError as e:
        raise ApiError(400, e.message) from e
    return {"model": served.name, **found}


@torch.inference_mode()
def entities(served: Served, request: EntitiesRequest) -> dict:
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", request.text)]
    if not spans:
        raise ApiError(400, "text is empty", param="text")
    words = [request.text[start:end] for start, end in spans]
    encoded = served.tokenizer(
        words, is_split_into_words=True, truncation=True, max_length=served.positions,
        return_tensors="pt",
    )  # fmt: skip
    logits = served.model(**encoded.to(served.model.device)).logits[0]
    names = [served.model.config.id2label[i] for i in range(served.model.config.num_labels)]
    tags = word_tags(logits.argmax(-1).tolist(), encoded.word_ids(0), len(words), names)
    found: list[dict] = []
    previous = OUTSIDE
    for (start, end), word, tag in zip(spans, words, tags, strict=True):
        # I-X after B-X or I-X extends that entity; any other B- or I- starts one (as seqeval)
        if tag.startswith("I-") and previous != OUTSIDE and previous[2:] == tag[2:]:
            found[-1]["end"] = end
            found[-1]["text"] = request.text[found[-1]["start"] : end]
        elif tag != OUTSIDE:
            found.append({"label": tag[2:], "text": word, "start": start, "end": end})
        previous = tag
    return {"model": served.name, "words": len(words), "entities": found}

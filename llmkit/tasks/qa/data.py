"""Extractive QA (SQuAD v1.1, CMRC 2018): reading the data, cutting long contexts into
overlapping windows (document stride), and turning start/end scores back into answer text.

The same windowing and span search serve `finetune` (evaluation) and `llmkit answer`, so a
question gets the same answer from both.

Data comes from the hub (`rajpurkar/squad`; CMRC 2018: `clue/clue`'s cmrc2018) or from local
files in SQuAD's JSON layout (`{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}]}]}]}]}`), e.g. the official train-v1.1.json
/ dev-v1.1.json, or CMRC 2018's train.json / dev.json (CLUE's cmrc2018_public/), which use
the same layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from llmkit.errors import UserError
from llmkit.tasks.qa import QaKeys
from llmkit.tasks.splits import HubCopy, SplitSource


@dataclass(frozen=True)
class QaDataset:
    """Where one extractive QA task's data is: its hub dataset and its local copy's files."""

    hub: tuple[str, str | None]  # repo, config
    files: dict[str, tuple[str, ...]]  # split → file names in a local copy
    copy_folder: str  # under $LLMKIT_DATA_DIR


DATASETS = {
    "squad": QaDataset(
        ("rajpurkar/squad", None),
        {"train": ("train-v1.1.json",), "validation": ("dev-v1.1.json",)},
        "squad",
    ),
    "cmrc2018": QaDataset(
        ("clue/clue", "cmrc2018"),
        {"train": ("train.json",), "validation": ("dev.json",)},
        "clue/cmrc2018_public",
    ),
}
N_BEST = 20  # start and end candidates considered per window, as in Hugging Face's run_qa


def read_squad_json(path: Path) -> datasets.Dataset:
    """SQuAD's nested JSON flattened to the hub's columns: id, title, context, question,
    answers {text: [...], answer_start: [...]}."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text") from e
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not JSON: {e.msg} (line {e.lineno})") from e
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise UserError(f'{path} is not in SQuAD\'s layout (a "data" list of articles)')
    rows: dict[str, list] = {k: [] for k in ("id", "title", "context", "question", "answers")}
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    rows["id"].append(str(qa["id"]))
                    rows["title"].append(article.get("title", ""))
                    rows["context"].append(paragraph["context"])
                    rows["question"].append(qa["question"])
                    rows["answers"].append(
                        {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [int(a["answer_start"]) for a in qa["answers"]],
                        }
                    )
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: an article, paragraph or question lacks {e}") from None
    if not rows["id"]:
        raise UserError(f"{path} holds no questions")
    return datasets.Dataset.from_dict(rows)


def split_source(keys: QaKeys) -> SplitSource:
    task = keys.name.removeprefix("qa/")
    source = DATASETS[task]

    def from_hub(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        if "title" not in dataset.column_names:  # CMRC 2018's rows have none
            dataset = dataset.add_column("title", [""] * len(dataset))
        return dataset.select_columns(["id", "title", "context", "question", "answers"])

    return SplitSource(
        keys,
        lambda path, split: read_squad_json(path),
        source.files,
        copy_folder=source.copy_folder,
        hub=HubCopy(*source.hub, from_hub),
    )


@dataclass(frozen=True)
class Windows:
    """How a question and a long context are cut into model-sized windows."""

    max_length: int  # tokens per window, question included
    stride: int  # context tokens shared by neighbouring windows

    def check(self) -> None:
        if self.stride >= self.max_length // 2:
            raise UserError(
                f"task.doc_stride ({self.stride}) must be less than half the window "
                f"({self.max_length} tokens)",
                f"e.g. --set task.doc_stride={self.max_length // 4}",
            )


def encode_windows(tokenizer, questions: list[str], contexts: list[str], windows: Windows):
    """Every window of every (question, context) pair; `overflow_to_sample_mapping` names the
    pair each window came from and `offset_mapping` locates its tokens in the context."""
    windows.check()
    # Questions are short; one that would leave no room for context is cut to half a window.
    questions = [q.lstrip() for q in questions]
    question_ids = tokenizer(questions, add_special_tokens=False)["input_ids"]
    limit = windows.max_length // 2 - windows.stride // 2
    questions = [
        tokenizer.decode(ids[:limit]) if len(ids) > limit else q
        for q, ids in zip(questions, question_ids, strict=True)
    ]
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=windows.max_length,
        stride=windows.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def training_windows(batch: dict, tokenizer, windows: Windows) -> dict:
    """Windows labelled with the answer's first and last token; a window that does not hold
    the whole (first) answer points both at position 0, "no answer here"."""
    encoded = encode_windows(tokenizer, batch["question"], batch["context"], windows)
    starts, ends = [], []
    for index, offsets in enumerate(encoded["offset_mapping"]):
        example = encoded["overflow_to_sample_mapping"][index]
        answers = batch["answers"][example]
        sequence = encoded.sequence_ids(index)
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        first = sequence.index(1)
        last = len(sequence) - 1 - sequence[::-1].index(1)
        if offsets[first][0] > start_char or offsets[last][1] < end_char:
            starts.append(0)
            ends.append(0)
            continue
        start = first
        while start <= last and offsets[start][0] <= start_char:
            start += 1
        end = last
        while end >= first and offsets[end][1] >= end_char:
            end -= 1
        starts.append(start - 1)
        ends.append(end + 1)
    encoded.pop("offset_mapping")
    encoded.pop("overflow_to_sample_mapping")
    encoded["start_positions"] = starts
    encoded["end_positions"] = ends
    return encoded


def prediction_windows(batch: dict, tokenizer, windows: Windows, ids: list[str]) -> dict:
    """Windows for prediction: each keeps its question's id, and offsets only for context
    tokens (None elsewhere), so that answers can only come from the context."""
    encoded = encode_windows(tokenizer, batch["question"], batch["context"], windows)
    example_ids, offsets = [], []
    for index, mapping in enumerate(encoded["offset_mapping"]):
        sequence = encoded.sequence_ids(index)
        example_ids.append(ids[encoded["overflow_to_sample_mapping"][index]])
        offsets.append([o if s == 1 else None for o, s in zip(mapping, sequence, strict=True)])
    encoded.pop("overflow_to_sample_mapping")
    encoded["example_id"] = example_ids
    encoded["offset_mapping"] = offsets
    return encoded


@dataclass(frozen=True)
class Answer:
    text: str
    score: float  # start score + end score (logits)
    start: int  # character offsets in the context
    end: int


def best_answers(
    contexts: dict[str, str],
    window_ids: list[str],
    window_offsets: list[list],
    start_scores: np.ndarray,
    end_scores: np.ndarray,
    *,
    max_answer_tokens: int = 30,
    top_k: int = 1,
) -> dict[str, list[Answer]]:
    """The `top_k` best spans of each question over all its windows: start ≤ end, inside the
    context, at most `max_answer_tokens` long, ranked by start score + end score."""
    candidates: dict[str, list[Answer]] = {key: [] for key in contexts}
    for window, key in enumerate(window_ids):
        offsets = window_offsets[window]
        starts = start_scores[window][: len(offsets)]
        ends = end_scores[window][: len(offsets)]
        for start in np.argsort(starts)[::-1][:N_BEST]:
            if offsets[start] is None:
                continue
            for end in np.argsort(ends)[::-1][:N_BEST]:
                if offsets[end] is None or end < start or end - start + 1 > max_answer_tokens:
                    continue
                first, last = offsets[start][0], offsets[end][1]
                candidates[key].append(
                    Answer(
                        contexts[key][first:last],
                        float(starts[start] + ends[end]),
                        first,
                        last,
                    )
                )
    ranked = {}
    for key, found in candidates.items():
        best: dict[tuple[int, int], Answer] = {}  # a span seen in two windows keeps its best
        for answer in found:
            span = (answer.start, answer.end)
            if span not in best or answer.score > best[span].score:
                best[span] = answer
        ordered = sorted(best.values(), key=lambda a: a.score, reverse=True)
        ranked[key] = ordered[:top_k] or [Answer("", float("-inf"), 0, 0)]
    return ranked

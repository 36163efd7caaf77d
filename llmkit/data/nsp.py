"""Sentence-pair examples for next-sentence prediction (BERT's second pretraining task).

Each document is cut into segments of up to (seq_len - 3) / 2 tokens (a short document into
two halves). Consecutive segments form a pair; half of the pairs keep their true second
segment (label 0, "is next"), the other half get a segment drawn from another document
(label 1, "random"). An example is `[CLS] A [SEP] B [SEP]` with token type ids 0 for
`[CLS] A [SEP]` and 1 for `B [SEP]`; examples vary in length and are padded per batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import datasets
import numpy as np
from transformers import PreTrainedTokenizerFast

from llmkit.data.packing import EncodeStats, encode_batches
from llmkit.errors import UserError

IS_NEXT, RANDOM_NEXT = 0, 1


def _segments(doc: np.ndarray, size: int) -> list[np.ndarray]:
    if len(doc) < 2:
        return []
    if len(doc) <= 2 * size:
        return [doc[: len(doc) // 2], doc[len(doc) // 2 :]]
    return [doc[i : i + size] for i in range(0, len(doc), size)]


def build_sentence_pairs(
    batches: Iterable[list[str]],
    tokenizer: PreTrainedTokenizerFast,
    seq_len: int,
    *,
    seed: int,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, EncodeStats]:
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise UserError("next-sentence prediction needs a tokenizer with [CLS] and [SEP]")
    started = time.perf_counter()
    size = (seq_len - 3) // 2
    stats = EncodeStats()
    documents: list[list[np.ndarray]] = []
    for chunk in encode_batches(batches, tokenizer, [], num_proc=num_proc):
        stats.add(chunk.stats)
        for doc in np.split(chunk.ids, np.cumsum(chunk.doc_lengths)[:-1]):
            segments = _segments(doc, size)
            if segments:
                documents.append(segments)
    if len(documents) < 2:
        raise UserError(
            "next-sentence prediction needs at least two documents of two or more tokens",
            "use a larger corpus, or set objective.nsp: false",
        )
    rng = np.random.default_rng(seed)
    cls, sep = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
    input_ids, token_type_ids, labels = [], [], []
    for index, segments in enumerate(documents):
        for first, second in zip(segments[0::2], segments[1::2], strict=False):
            label = IS_NEXT
            if rng.random() < 0.5:
                other = int(rng.integers(len(documents) - 1))
                other += other >= index  # any document but this one
                pool = documents[other]
                second = pool[int(rng.integers(len(pool)))]
                label = RANDOM_NEXT
            input_ids.append(cls + first.tolist() + sep + second.tolist() + sep)
            token_type_ids.append([0] * (len(first) + 2) + [1] * (len(second) + 1))
            labels.append(label)
    stats.blocks = len(labels)
    stats.seconds = time.perf_counter() - started
    features = datasets.Features(
        {
            "input_ids": datasets.List(datasets.Value("int32")),
            "token_type_ids": datasets.List(datasets.Value("int8")),
            "next_sentence_label": datasets.Value("int8"),
        }
    )
    pairs = datasets.Dataset.from_dict(
        {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": labels},
        features=features,
    )
    return pairs, stats

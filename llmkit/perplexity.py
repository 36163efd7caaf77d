"""Perplexity, exactly as the field defines it.

Every method reduces to windows: an input sequence and the target tokens predicted by its
last positions (the logits at input position i predict the token after it). Windows are
scored in batches (right-padded, attention-masked, so padding changes nothing; on a CPU
several batches at once, see `scoring_workers`), and each method only decides which windows
to build:

- `sliding_windows`: token perplexity as in Hugging Face's guide "Perplexity of fixed-length
  models": windows of max_length tokens every `stride` tokens; each token is scored once,
  with up to max_length - stride tokens of context (the stream's first token has none and is
  not scored).
- `rolling_windows`: lm-evaluation-harness's loglikelihood_rolling: a document is cut into
  non-overlapping windows of max_length predicted tokens; the first token is predicted from
  the prefix token (EOS), each later window from the token before it.
- `pseudo_log_likelihood`: masked LMs (Salazar et al., 2020): each token masked in turn and
  predicted from everything else in its [CLS] ... [SEP] block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llmkit.errors import UserError

Progress = Callable[[int], None] | None


@dataclass(frozen=True)
class Window:
    input_ids: list[int]
    targets: list[int]  # predicted by the last len(targets) positions of input_ids


def sliding_windows(ids: list[int], max_length: int, stride: int) -> Iterator[Window]:
    previous_end = 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        first_target = max(previous_end, begin + 1)  # the token at `begin` has no context
        if first_target < end:
            yield Window(ids[begin : end - 1], ids[first_target:end])
        previous_end = end
        if end == len(ids):
            break


def rolling_windows(ids: list[int], prefix_id: int, max_length: int) -> Iterator[Window]:
    if not ids:
        return
    first = min(max_length, len(ids))
    yield Window([prefix_id, *ids[: first - 1]], ids[:first])
    predicted = first
    while predicted < len(ids):
        count = min(len(ids) - predicted, max_length)
        end = predicted + count
        yield Window(ids[max(0, end - max_length - 1) : end - 1], ids[end - count : end])
        predicted += count


def target_logits(model, input_ids, attention_mask, targets_at) -> torch.Tensor:
    """Logits at the positions `targets_at` (a boolean mask) selects, flattened row by row.

    Only the scored positions go through the output layer (transformers' `logits_to_keep`
    with a boolean mask): with the usual stride of half a window, half the positions are
    context only, and the vocabulary projection is much of a small model's cost. A model whose
    forward does not narrow its logits this way gets them all, and they are narrowed here.
    """
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=targets_at
    ).logits
    return logits if logits.dim() == 2 else logits[targets_at]


def _batch_scores(model, batch: list[Window], pad_id: int, device) -> list[float]:
    """Summed log-probability of each window's targets in one right-padded batch."""
    width = max(len(w.input_ids) for w in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    targets_at = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, window in enumerate(batch):
        length, count = len(window.input_ids), len(window.targets)
        input_ids[row, :length] = torch.tensor(window.input_ids)
        attention[row, :length] = 1
        targets_at[row, length - count : length] = True
    logits = target_logits(model, input_ids.to(device), attention.to(device), targets_at.to(device))
    targets = torch.tensor([t for w in batch for t in w.targets], device=device)
    token_log_probs = -F.cross_entropy(logits.float(), targets, reduction="none")
    counts = [len(w.targets) for w in batch]
    return torch.stack([part.sum() for part in token_log_probs.split(counts)]).tolist()


def scoring_workers(device: torch.device) -> int:
    """Batches scored side by side: on a CPU one per intra-op thread, each op on one thread.

    A small model's ops (a 128-wide matrix product, a GELU over a few MB) split across
    threads spend much of their time waiting for each other; whole batches on separate cores
    do not: 1.05-1.16x the speed of one batch on two threads for gpt2-tiny on 2 cores, 1.1x
    at gpt2-small's width (BENCHMARKS.md), for one more batch of activations in memory. Each
    batch is computed as it would be alone, so the scores are the same floats. An
    accelerator runs one batch at a time.
    """
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


@contextmanager
def ops_on_one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def score_windows(
    model, windows: list[Window], *, batch_size: int, pad_id: int, on_window: Progress = None
) -> list[float]:
    """Summed log-probability of each window's targets, in the windows' order."""
    device = next(model.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i].input_ids))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    scores = [0.0] * len(windows)

    def score(indices: list[int]) -> None:
        with torch.inference_mode():  # per thread: the mode is thread-local
            sums = _batch_scores(model, [windows[i] for i in indices], pad_id, device)
        for index, total in zip(indices, sums, strict=True):
            scores[index] = total
        if on_window is not None:
            on_window(sum(len(windows[i].targets) for i in indices))

    workers = min(scoring_workers(device), len(batches))
    if workers <= 1:
        for indices in batches:
            score(indices)
        return scores
    with ops_on_one_thread(), ThreadPoolExecutor(workers) as pool:
        pending = [pool.submit(score, indices) for indices in batches]
        try:
            for future in pending:
                future.result()
        except BaseException:  # an error or Ctrl-C: stop after the batches in flight
            for future in pending:
                future.cancel()
            raise
    return scores


def document_prefix_id(tokenizer) -> int:
    """The token a document's first token is predicted from: EOS, else BOS (as the harness's
    HFLM does for a model whose tokenizer adds no BOS of its own)."""
    prefix_id = (
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    )
    if prefix_id is None:
        raise UserError(
            "the tokenizer has neither an EOS nor a BOS token to predict a document's first "
            "token from"
        )
    return prefix_id


@dataclass
class TokenPerplexity:
    nll: float  # summed over scored tokens
    tokens: int
    windows: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)


def token_perplexity(
    model,
    ids: list[int],
    *,
    max_length: int,
    stride: int,
    batch_size: int,
    pad_id: int,
    on_window: Progress = None,
) -> TokenPerplexity:
    windows = list(sliding_windows(ids, max_length, stride))
    scores = score_windows(
        model, windows, batch_size=batch_size, pad_id=pad_id, on_window=on_window
    )
    return TokenPerplexity(-sum(scores), sum(len(w.targets) for w in windows), len(windows))


def document_log_likelihoods(
    model,
    documents: list[list[int]],
    *,
    prefix_id: int,
    max_length: int,
    batch_size: int,
    pad_id: int,
    on_window: Progress = None,
) -> list[float]:
    """Each document's summed log-likelihood (lm-evaluation-harness's loglikelihood_rolling)."""
    windows, owner = [], []
    for index, ids in enumerate(documents):
        for window in rolling_windows(ids, prefix_id, max_length):
            windows.append(window)
            owner.append(index)
    scores = score_windows(
        model, windows, batch_size=batch_size, pad_id=pad_id, on_window=on_window
    )
    totals = [0.0] * len(documents)
    for index, score in zip(owner, scores, strict=True):
        totals[index] += score
    return totals


@torch.inference_mode()
def pseudo_log_likelihood(
    model,
    ids: list[int],
    *,
    cls_id: int,
    sep_id: int,
    mask_id: int,
    max_length: int,
    batch_size: int,
    on_window: Progress = None,
) -> TokenPerplexity:
    """Masked-LM pseudo-log-likelihood over non-overlapping [CLS] ... [SEP] blocks."""
    device = next(model.parameters()).device
    body = max_length - 2
    total, blocks = 0.0, 0
    for start in range(0, len(ids), body):
        chunk = ids[start : start + body]
        sequence = torch.tensor([cls_id, *chunk, sep_id], device=device)
        for first in range(0, len(chunk), batch_size):
            positions = torch.arange(first, min(first + batch_size, len(chunk)), device=device) + 1
            masked = sequence.repeat(len(positions), 1)
            masked[torch.arange(len(positions)), positions] = mask_id
            logits = model(input_ids=masked).logits[torch.arange(len(positions)), positions].float()
            total -= F.cross_entropy(logits, sequence[positions], reduction="sum").item()
            if on_window is not None:
                on_window(len(positions))
        blocks += 1
    return TokenPerplexity(-total, len(ids), blocks)

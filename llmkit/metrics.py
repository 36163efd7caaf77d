"""Evaluation metrics for language-model pretraining.

Evaluation never keeps logits: `summarize_predictions` turns each batch's logits into four
numbers per row (summed NLL, correct predictions, predicted tokens, and the NSP guess), and
`language_model_metrics` adds them up. Perplexity is exp of the mean NLL over predicted
tokens — for MLM over the masked tokens only, so an NSP loss never leaks into it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers import EvalPrediction

IGNORE_INDEX = -100


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 700.0))  # exp overflows a float past ~709


def summarize_predictions(logits, labels, *, shift: bool) -> torch.Tensor:
    """Per row: [NLL summed over predicted tokens, correct, predicted tokens, NSP argmax]."""
    nsp_guess = None
    if isinstance(logits, (tuple, list)):  # BertForPreTraining: (token logits, NSP logits)
        logits, nsp_logits = logits[0], logits[1]
        nsp_guess = nsp_logits.argmax(-1).float()
    if isinstance(labels, (tuple, list)):
        labels = labels[0]
    if shift:  # a causal LM predicts token t+1 from position t
        logits, labels = logits[:, :-1], labels[:, 1:]
    predicted = labels != IGNORE_INDEX
    nll = (
        F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
        * predicted
    )
    correct = (logits.argmax(-1) == labels) & predicted
    rows = [nll.sum(1), correct.sum(1).float(), predicted.sum(1).float()]
    rows.append(nsp_guess if nsp_guess is not None else torch.full_like(rows[0], -1.0))
    return torch.stack(rows, dim=1)


def language_model_metrics(prediction: EvalPrediction) -> dict[str, float]:
    summary = np.asarray(prediction.predictions, dtype=np.float64)
    nll, correct, count = summary[:, 0].sum(), summary[:, 1].sum(), summary[:, 2].sum()
    metrics = {
        "token_loss": nll / count,
        "perplexity": perplexity(nll / count),
        "accuracy": correct / count,
    }
    if (summary[:, 3] >= 0).all() and isinstance(prediction.label_ids, (tuple, list)):
        nsp_labels = np.asarray(prediction.label_ids[1])
        metrics["nsp_accuracy"] = float((summary[:, 3] == nsp_labels).mean())
    return metrics

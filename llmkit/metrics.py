"""Evaluation metrics: language-model pretraining, and the official metrics of the fine-tuning
tasks (GLUE and CLUE, SQuAD and CMRC 2018, CoNLL NER via seqeval, ROUGE and BLEU), computed
locally.

Evaluation never keeps logits: `summarize_predictions` turns each batch's logits into four
numbers per row (summed NLL, correct predictions, predicted tokens, and the NSP guess), and
`language_model_metrics` adds them up. Perplexity is exp of the mean NLL over predicted
tokens — for MLM over the masked tokens only, so an NSP loss never leaks into it.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

import datasets
import evaluate
import numpy as np
import scipy.stats
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
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


def metric_info(description: str, citation: str, inputs: str, prediction, reference):
    """evaluate's MetricInfo of a metric scoring `predictions` (each of feature type
    `prediction`) against `references` (`reference`)."""
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs,
        features=datasets.Features({"predictions": prediction, "references": reference}),
    )


TEXT = datasets.Value("string")
TEXTS = datasets.Sequence(TEXT)


class GlueMetric(evaluate.Metric):
    """GLUE's official metrics for one task (`config_name`), computed with scikit-learn and
    scipy, so that nothing is fetched from the hub (evaluate.load("glue") would be)."""

    def _info(self) -> evaluate.MetricInfo:
        label = datasets.Value("float32" if self.config_name == "stsb" else "int64")
        return metric_info(
            "GLUE: Matthews correlation (CoLA), F1 and accuracy (MRPC, QQP), Pearson and "
            "Spearman correlation (STS-B), accuracy (the others).",
            "Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for Natural "
            "Language Understanding, 2019.",
            "predictions and references: label ids (STS-B: scores)",
            label,
            label,
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.config_name == "stsb":
            return {
                "pearson": float(scipy.stats.pearsonr(predictions, references)[0]),
                "spearmanr": float(scipy.stats.spearmanr(predictions, references)[0]),
            }
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        results = {"accuracy": float(accuracy_score(references, predictions))}
        if self.config_name in ("mrpc", "qqp"):
            results["f1"] = float(f1_score(references, predictions))
        return results


def glue_metric(task: str) -> GlueMetric:
    return GlueMetric(config_name=task, keep_in_memory=True)


def normalize_squad_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles (a, an, the),
    single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = set(string.punctuation)


def squad_exact(prediction: str, truth: str) -> float:
    return float(normalize_squad_answer(prediction) == normalize_squad_answer(truth))


def squad_token_f1(prediction: str, truth: str) -> float:
    predicted = normalize_squad_answer(prediction).split()
    expected = normalize_squad_answer(truth).split()
    common = Counter(predicted) & Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


# CMRC 2018's evaluation script strips these (and lower-cases) before comparing answers.
# ("……" is on its list as a pair, which a single character never equals: "…" stays.)
CMRC_PUNCTUATION = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
CJK_CHARACTER = re.compile("[\u4e00-\u9fa5]")


def cmrc_tokens(text: str) -> list[str]:
    """CMRC 2018's "mixed segmentation": each Chinese character a token, the runs of other
    characters between them split at whitespace (the official script splits them with
    NLTK's word tokenizer), lower-cased, the punctuation above dropped."""
    tokens, run = [], ""
    for character in text.lower().strip():
        if CJK_CHARACTER.match(character) or character in CMRC_PUNCTUATION:
            tokens += run.split()
            run = ""
            if character not in CMRC_PUNCTUATION:
                tokens.append(character)
        else:
            run += character
    return tokens + run.split()


def longest_common_run(a: list[str], b: list[str]) -> int:
    """The length of the longest run of tokens that `a` and `b` share (CMRC 2018's F1
    counts this common substring, not a bag of shared tokens as SQuAD's does)."""
    best, previous = 0, [0] * (len(b) + 1)
    for token in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, 1):
            if token == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def cmrc_f1(prediction: str, truth: str) -> float:
    predicted, expected = cmrc_tokens(prediction), cmrc_tokens(truth)
    common = longest_common_run(predicted, expected)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def cmrc_exact(prediction: str, truth: str) -> float:
    def stripped(text: str) -> str:
        return "".join(c for c in text.lower().strip() if c not in CMRC_PUNCTUATION)

    return float(stripped(prediction) == stripped(truth))


class QaMetric(evaluate.Metric):
    """Extractive QA's exact match and F1, each prediction scored against its best-matching
    reference answer, averaged, as percentages: SQuAD v1.1's (evaluate-v1.1.py: normalised
    words, F1 over shared words; `config_name="squad"`) or CMRC 2018's (Chinese characters,
    punctuation stripped, F1 over the longest common run; `config_name="cmrc2018"`)."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            "Extractive QA exact match and F1 (SQuAD v1.1's or CMRC 2018's).",
            "Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, "
            "2016; Cui et al., A Span-Extraction Dataset for Chinese Machine Reading "
            "Comprehension, 2019.",
            "predictions: answer texts; references: lists of answer texts",
            TEXT,
            TEXTS,
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        if self.config_name == "cmrc2018":
            same, overlap = cmrc_exact, cmrc_f1
        else:
            same, overlap = squad_exact, squad_token_f1
        exact = f1 = 0.0
        for predicted, truths in zip(predictions, references, strict=True):
            exact += max(same(predicted, t) for t in truths)
            f1 += max(overlap(predicted, t) for t in truths)
        count = len(predictions)
        return {"exact_match": 100 * exact / count, "f1": 100 * f1 / count}


class EntityMetric(evaluate.Metric):
    """Entity-level precision, recall and F1 (an entity counts only when its type and both
    boundaries are right, as conlleval counts), per entity type too, and token accuracy:
    seqeval's definitions, computed by seqeval."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            "Named-entity recognition scores over IOB tag sequences (seqeval).",
            "Tjong Kim Sang and De Meulder, Introduction to the CoNLL-2003 Shared Task, 2003; "
            "seqeval (Nakayama, 2018).",
            "predictions and references: one tag sequence per sentence",
            TEXTS,
            TEXTS,
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        from seqeval.metrics import accuracy_score as token_accuracy
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        results = {
            "precision": float(precision_score(references, predictions, zero_division=0)),
            "recall": float(recall_score(references, predictions, zero_division=0)),
            "f1": float(f1_score(references, predictions, zero_division=0)),
            "accuracy": float(token_accuracy(references, predictions)),
        }
        per_type = classification_report(references, predictions, output_dict=True, zero_division=0)
        for name, scores in per_type.items():
            if not name.endswith(" avg"):
                results[f"f1_{name}"] = float(scores["f1-score"])
        return results


class GenerationMetric(evaluate.Metric):
    """Scores of generated text against references: ROUGE-1/2/L/Lsum F-measures with
    stemming (`config_name="summarization"`, Google's rouge_score, as Hugging Face's
    summarization examples do) or sacreBLEU's corpus BLEU and chrF
    (`config_name="translation"`, sacrebleu's default 13a tokenisation). All × 100."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            "ROUGE (summarization) or BLEU and chrF (translation).",
            "Lin, ROUGE, 2004; Post, A Call for Clarity in Reporting BLEU Scores, 2018.",
            "predictions: generated texts; references: one text each",
            TEXT,
            TEXT,
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        if self.config_name == "translation":
            import sacrebleu

            return {
                "bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score),
                "chrf": float(sacrebleu.corpus_chrf(predictions, [references]).score),
            }
        from rouge_score import rouge_scorer

        kinds = ["rouge1", "rouge2", "rougeL", "rougeLsum"]  # rougeLsum: one sentence a line
        scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=True)
        scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
        # The plain mean over examples (a bootstrap estimate, as evaluate's default, would
        # differ from run to run in its last digits).
        return {kind: float(100 * np.mean([s[kind].fmeasure for s in scores])) for kind in kinds}

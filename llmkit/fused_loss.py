"""A training loss that never holds the whole batch's logits: chunked linear cross-entropy.

In a small language model most of a training step is the output layer: logits for every
position over the whole vocabulary (batch × seq_len × vocab floats, 64 MB for gpt2-tiny's
batch), a log-softmax over them, and its backward pass, each a trip through memory. Here the
output projection, the loss and its gradients are computed together, a few hundred rows at a
time, so each chunk of logits is made, used and dropped while it is still in cache (the idea of
Liger's fused linear cross-entropy and of "Cut Your Losses", Wijmans et al. 2024, in plain
PyTorch). Masked LMs also score only the masked positions (the others carry no label), which
is most of their saving.

The models stay transformers' own classes: only the training forward of a model instance is
replaced, and only for the families whose output layer this reproduces exactly (GPT-2, Llama,
nanochat with its soft-capped logits, BERT, RoBERTa, ModernBERT). Evaluation, generation and
saving use the model's own forward. The loss equals the model's own to float precision,
reduced the same way (tests/test_fused_loss.py).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

IGNORE_INDEX = -100
CHUNK_BYTES = 4 * 2**20  # one chunk of fp32 logits: small enough to stay in a CPU's cache
# Masked LMs score a different number of positions in every batch. Rounded up to a multiple of
# this, the scored rows take a handful of sizes instead of a new one per step (see
# `scored_rows`).
SCORED_ROWS_MULTIPLE = 64
ONE = torch.ones(())


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of (hidden @ weight.T + bias) against targets (IGNORE_INDEX: none),
    the logits soft-capped to (-softcap, softcap) by softcap·tanh(logits / softcap) when
    `softcap` is given (as nanochat's and Gemma's output layers do).

    The gradients are computed chunk by chunk in the forward pass (softmax minus one-hot, times
    the cap's slope 1 − tanh², times the chunk's inputs), and the backward pass only scales them.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap):
        rows = max(1, CHUNK_BYTES // (4 * weight.shape[0]))
        wants_grad = any(ctx.needs_input_grad[:3])
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden) if wants_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if wants_grad else None
        grad_bias = (
            torch.zeros_like(bias, dtype=torch.float32) if wants_grad and bias is not None else None
        )
        # a capped chunk's buffers, reused by every chunk (a fresh 4 MB tensor per chunk would
        # be page-faulted in each time); uncapped logits become their probabilities in place
        shape = (rows, weight.shape[0])
        buffer = torch.empty(shape, dtype=torch.float32, device=hidden.device) if softcap else None
        slope_buffer = torch.empty_like(buffer) if softcap and wants_grad else None
        for start in range(0, hidden.shape[0], rows):
            chunk = hidden[start : start + rows]
            target = targets[start : start + rows]
            scored = (target != IGNORE_INDEX).float()
            safe_target = target.clamp_min(0).unsqueeze(1)
            logits = F.linear(chunk, weight, bias).float()
            slope = None
            if softcap:
                # capped = softcap · tanh(logits / softcap) lies within ±softcap, so exp(capped)
                # cannot overflow (fp32 holds exp(88)): no row maximum to subtract, and the
                # chunk is read and written as few times as possible (the cap's passes
                # dominated nanochat's step on a CPU).
                squashed = logits.div_(softcap).tanh_()
                target_logit = squashed.gather(1, safe_target).squeeze(1) * softcap
                probabilities = torch.mul(squashed, softcap, out=buffer[: len(chunk)]).exp_()
                row_sum = probabilities.sum(dim=1, keepdim=True)
                log_norm = row_sum.log().squeeze(1)
                if wants_grad:  # d(capped)/d(logits) = 1 − tanh²
                    slope = torch.addcmul(
                        ONE, squashed, squashed, value=-1, out=slope_buffer[: len(chunk)]
                    )
            else:
                target_logit = logits.gather(1, safe_target).squeeze(1)
                # log-sum-exp and softmax from one in-place exp over the chunk (the chunk's
                # logits become its probabilities; nothing else of its size is allocated).
                row_max = logits.amax(dim=1, keepdim=True)
                probabilities = logits.sub_(row_max).exp_()
                row_sum = probabilities.sum(dim=1, keepdim=True)
                log_norm = (row_sum.log() + row_max).squeeze(1)
            total += ((log_norm - target_logit) * scored).sum()
            if wants_grad:
                # d(sum of losses)/d(logits) = softmax − one-hot, on scored rows only: one pass
                # normalises and masks, the one-hot is subtracted where a row is scored.
                grad_logits = probabilities.mul_((scored / row_sum.squeeze(1)).unsqueeze(1))
                grad_logits.scatter_add_(1, safe_target, -scored.unsqueeze(1))
                if slope is not None:
                    grad_logits.mul_(slope)
                if hidden.dtype == weight.dtype == torch.float32:
                    torch.mm(grad_logits, weight, out=grad_hidden[start : start + rows])
                else:
                    grad_hidden[start : start + rows] = grad_logits.to(weight.dtype) @ weight
                grad_weight.addmm_(grad_logits.t(), chunk.float())
                if grad_bias is not None:
                    grad_bias += grad_logits.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        return (
            grad_hidden * grad_total.to(grad_hidden.dtype),
            (grad_weight * grad_total).to(ctx.weight_dtype),
            (grad_bias * grad_total).to(ctx.weight_dtype) if grad_bias is not None else None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    softcap: float | None = None,
) -> torch.Tensor:
    """Summed token NLL of a linear output layer, computed in chunks (rows of `hidden`)."""
    return _LinearCrossEntropy.apply(
        hidden.reshape(-1, hidden.shape[-1]), weight, bias, targets.reshape(-1), softcap
    )


def scored_rows(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of `hidden` whose label is not IGNORE_INDEX, and their labels, padded with
    unscored rows (label IGNORE_INDEX) to a multiple of SCORED_ROWS_MULTIPLE.

    Why the padding: selecting exactly the masked rows made every step allocate features, chunk
    logits and gradients of a size no step had before. glibc's malloc answers such a stream of
    large, ever-different sizes by raising its mmap threshold and then serving them from a heap
    it never gives back whole, so a masked-LM run's memory grew with every step (1.5 → 3 GB over
    a BERT-Mini run; issue 20). Padded rows add nothing to the loss or to any gradient.
    """
    flat_labels = labels.reshape(-1)
    positions = (flat_labels != IGNORE_INDEX).nonzero().squeeze(1)
    scored = positions.numel()
    positions = F.pad(positions, (0, -scored % SCORED_ROWS_MULTIPLE))  # padding: row 0 again
    targets = flat_labels[positions]
    targets[scored:] = IGNORE_INDEX
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions), targets


def _causal_lm_forward(self, input_ids=None, labels=None, num_items_in_batch=None, **kwargs):
    if labels is None or not self.training:
        return self._forward_with_logits(
            input_ids=input_ids, labels=labels, num_items_in_batch=num_items_in_batch, **kwargs
        )
    hidden = self.base_model(input_ids=input_ids, **kwargs).last_hidden_state
    # Position i predicts token i + 1; the last position predicts nothing (as ForCausalLMLoss).
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    head = self.get_output_embeddings()
    softcap = getattr(self.config, "final_logit_softcapping", None)
    total = linear_cross_entropy(hidden, head.weight, head.bias, targets, softcap)
    # transformers' reduction: over the whole accumulated batch when Trainer says its size.
    count = (
        num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    )
    return CausalLMOutput(loss=total / count)


def _masked_lm_forward(self, input_ids=None, labels=None, next_sentence_label=None, **kwargs):
    nsp = next_sentence_label is not None
    if labels is None or not self.training:
        extra = {"next_sentence_label": next_sentence_label} if nsp else {}
        return self._forward_with_logits(input_ids=input_ids, labels=labels, **extra, **kwargs)
    # BERT and RoBERTa average each batch themselves; ModernBERT divides by the accumulated
    # batch's labelled tokens when Trainer says how many (as causal LMs do).
    items = kwargs.pop("num_items_in_batch", None)
    modern = self.config.model_type == "modernbert"
    outputs = self.base_model(input_ids=input_ids, **kwargs)
    hidden, targets = scored_rows(outputs[0], labels)
    if modern:
        features, decoder = self.head(hidden), self.decoder
    elif self.config.model_type == "roberta":
        head = self.lm_head
        features, decoder = head.layer_norm(F.gelu(head.dense(hidden))), head.decoder
    else:
        features, decoder = self.cls.predictions.transform(hidden), self.cls.predictions.decoder
    total = linear_cross_entropy(features, decoder.weight, decoder.bias, targets)
    count = items if modern and items is not None else (labels != IGNORE_INDEX).sum()
    loss = total / count
    if nsp:
        nsp_logits = self.cls.seq_relationship(outputs[1])
        loss = loss + F.cross_entropy(nsp_logits.view(-1, 2), next_sentence_label.view(-1))
    return MaskedLMOutput(loss=loss)


TRAINING_FORWARDS = {
    "GPT2LMHeadModel": _causal_lm_forward,
    "LlamaForCausalLM": _causal_lm_forward,
    "NanoChatForCausalLM": _causal_lm_forward,
    "ModernBertForMaskedLM": _masked_lm_forward,
    "BertForMaskedLM": _masked_lm_forward,
    "BertForPreTraining": _masked_lm_forward,
    "RobertaForMaskedLM": _masked_lm_forward,
}


def use_chunked_loss(model: PreTrainedModel) -> bool:
    """Train `model` with the chunked loss, if its class is one this reproduces exactly."""
    training_forward = TRAINING_FORWARDS.get(type(model).__name__)
    if training_forward is None:
        return False
    model._forward_with_logits = model.forward
    model.forward = types.MethodType(training_forward, model)
    return True

"""Token perplexity throughput: `llmkit eval-ppl`'s scoring against the HF guide's loop.

The plain way is the loop of Hugging Face's guide "Perplexity of fixed-length models": one
window of max_length tokens at a time, every `stride` tokens, the context's labels set to
-100, `model(input_ids, labels=...)`, NLL accumulated. llmkit scores the same windows in
batches (16), projecting only the scored positions onto the vocabulary. Same model, text
(joined with "\\n\\n" as the guide does), tokenizer, max_length and stride; the metric is
scored tokens per second of the scoring loop (loading and tokenizing excluded); quality: the
two perplexities agree to a relative 1e-5.
"""

from __future__ import annotations

import time

from benchmarks.harness import way_main


def _ids(options: dict, tokenizer) -> list[int]:
    with open(options["text"], encoding="utf-8") as handle:
        rows = handle.read().splitlines()
    return tokenizer("\n\n".join(rows))["input_ids"]


def llmkit_way(options: dict) -> dict:
    from llmkit.models import load_for_inference
    from llmkit.perplexity import token_perplexity

    model, tokenizer, _ = load_for_inference(options["model"], "fp32")
    ids = _ids(options, tokenizer)
    started = time.perf_counter()
    result = token_perplexity(
        model,
        ids,
        max_length=options["max_length"],
        stride=options["stride"],
        batch_size=16,  # eval-ppl's default
        pad_id=tokenizer.pad_token_id or 0,
    )
    seconds = time.perf_counter() - started
    return {"value": result.tokens / seconds, "perplexity": result.perplexity}


def plain_way(options: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(options["model"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(options["model"])
    encodings = torch.tensor([_ids(options, tokenizer)])
    max_length, stride = options["max_length"], options["stride"]
    started = time.perf_counter()
    seq_len = encodings.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = encodings[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(input_ids, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    seconds = time.perf_counter() - started
    perplexity = torch.exp(nll_sum / n_tokens).item()
    # every token after the stream's first is scored once (the guide's own count, n_tokens,
    # drops one per window)
    return {"value": seq_len / seconds, "perplexity": perplexity, "tokens": seq_len - 1}


WAYS = {"llmkit": llmkit_way, "plain HF": plain_way}

if __name__ == "__main__":
    way_main(WAYS)

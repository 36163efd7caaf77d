"""Generation throughput: `llmkit generate` against `pipeline("text-generation")`.

Same model, prompts (the first words of WikiText paragraphs), greedy decoding and
max_new_tokens. The pipeline is called the way its documentation shows, on the list of
prompts (one at a time: its default batch size is 1); llmkit batches 8 prompts with left
padding. The metric is new tokens per second of generation; quality: greedy decoding gives
the same completions both ways (the share that are identical is reported).
"""

from __future__ import annotations

import time

from benchmarks.harness import way_main


def llmkit_way(options: dict) -> dict:
    from llmkit.generation import DecodingOptions, generate_batch, generation_config_for
    from llmkit.models import load_for_inference

    model, tokenizer, _ = load_for_inference(options["model"], "fp32")
    config = generation_config_for(
        model, tokenizer, DecodingOptions(max_new_tokens=options["max_new_tokens"])
    )
    prompts = options["prompts"]
    started = time.perf_counter()
    completions = []
    for start in range(0, len(prompts), 8):
        completions += generate_batch(model, tokenizer, prompts[start : start + 8], config, [])
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in completions)
    return {"value": tokens / seconds, "completions": [c.completion for c in completions]}


def plain_way(options: dict) -> dict:
    from transformers import pipeline

    generator = pipeline("text-generation", model=options["model"], device="cpu")
    tokenizer = generator.tokenizer
    started = time.perf_counter()
    outputs = generator(
        options["prompts"],
        max_new_tokens=options["max_new_tokens"],
        do_sample=False,
        return_full_text=False,
    )
    seconds = time.perf_counter() - started
    completions = [output[0]["generated_text"] for output in outputs]
    tokens = sum(len(tokenizer(text)["input_ids"]) for text in completions)
    return {"value": tokens / seconds, "completions": completions}


WAYS = {"llmkit": llmkit_way, "plain HF": plain_way}

if __name__ == "__main__":
    way_main(WAYS)

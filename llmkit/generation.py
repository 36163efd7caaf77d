"""Decoding with transformers' `generate`: options, batching, stop strings, streaming, fills.
Decoder-only (causal LM) and encoder-decoder (T5, BART) models decode the same way here.

Decoding options start from the run directory's generation_config.json and are overridden by
the flags a user gives; greedy decoding unless sampling is asked for. Prompts of different
lengths are batched with left padding (the attention mask keeps the padding invisible), so a
batch gives the completions each prompt would get alone.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    TextStreamer,
    pipeline,
)

from llmkit.errors import UserError
from llmkit.models import model_positions

DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class DecodingOptions:
    """What the user asked for; None leaves the run's generation_config.json value."""

    max_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    num_return_sequences: int | None = None
    stop: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Out-of-range values are the user's mistake, said before any model work
        (transformers accepts some of them silently, e.g. top_p above 1)."""
        limits = {
            "max_new_tokens": (lambda v: v >= 1, "at least 1"),
            "temperature": (lambda v: v > 0, "above 0"),
            "top_k": (lambda v: v >= 0, "0 (off) or more"),
            "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
            "num_beams": (lambda v: v >= 1, "at least 1"),
            "repetition_penalty": (lambda v: v > 0, "above 0 (1 is off)"),
            "no_repeat_ngram_size": (lambda v: v >= 0, "0 (off) or more"),
            "num_return_sequences": (lambda v: v >= 1, "at least 1"),
        }
        for name, (valid, expected) in limits.items():
            value = getattr(self, name)
            if value is not None and not valid(value):
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} must be {expected}, not {value}")

    def overrides(self) -> dict:
        values = {k: v for k, v in vars(self).items() if k != "stop" and v is not None}
        # Asking for a sampling knob means asking for sampling.
        if self.do_sample is None and (self.temperature or self.top_p or self.top_k):
            values["do_sample"] = True
        return values


def generation_config_for(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, options: DecodingOptions
) -> GenerationConfig:
    options.check()
    config = copy.deepcopy(model.generation_config)
    if config.max_new_tokens is None:
        config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    config.stop_strings = [s for s in options.stop if s] or None
    config.pad_token_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    # A chat model stops at its end-of-turn token, saved in its generation_config.json; a
    # model saved without any stops at the tokenizer's EOS.
    if config.eos_token_id is None:
        config.eos_token_id = tokenizer.eos_token_id
    try:
        config.update(**options.overrides())  # validates what it sets
        config.validate(strict=True)
    except ValueError as e:
        raise UserError(f"these decoding flags do not go together: {e}") from e
    return config


def beams(config: GenerationConfig) -> int:
    return config.num_beams or 1  # transformers 5 leaves unset fields None


def sequences_per_prompt(config: GenerationConfig) -> int:
    return config.num_return_sequences or 1


@dataclass
class Completion:
    prompt: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def encode_prompts(tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> list[list[int]]:
    """Token ids per prompt; an empty prompt starts from the BOS (or EOS) token."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return [ids or [start] for ids in encoded]


def check_length(model: PreTrainedModel, prompt_tokens: int, config: GenerationConfig) -> None:
    positions = model_positions(model.config.get_text_config())
    if model.config.is_encoder_decoder:
        # the prompt goes to the encoder, the new tokens to the decoder: each has its positions
        if max(prompt_tokens, config.max_new_tokens + 1) > positions:
            raise UserError(
                f"a prompt of {prompt_tokens} tokens or --max-new-tokens "
                f"{config.max_new_tokens} exceeds the model's {positions} positions",
                "shorten the prompt or lower --max-new-tokens",
            )
        return
    if prompt_tokens + config.max_new_tokens > positions:
        raise UserError(
            f"a prompt of {prompt_tokens} tokens plus --max-new-tokens {config.max_new_tokens} is "
            f"longer than the model's {positions} positions",
            "shorten the prompt or lower --max-new-tokens",
        )


def _inputs(tokenizer, ids: list[list[int]], model) -> dict[str, torch.Tensor]:
    # A decoder-only model continues from the right end of every row; an encoder-decoder's
    # decoder starts afresh, and its encoder reads the prompt as it was trained to (padded
    # on the right).
    tokenizer.padding_side = "right" if model.config.is_encoder_decoder else "left"
    batch = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    return {key: value.to(model.device) for key, value in batch.items()}


def new_tokens(model: PreTrainedModel, output: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """The generated part of `generate`'s output: after the prompt for a decoder-only model,
    after the decoder's start token for an encoder-decoder."""
    return output[:, 1:] if model.config.is_encoder_decoder else output[:, prompt_length:]


def _completion_length(tokens: list[int], eos_id: int | list[int] | None, pad_id: int | None):
    """Generated tokens up to and including EOS, or any of several (later positions are
    padding)."""
    stops = set(eos_id if isinstance(eos_id, list) else [eos_id])
    for index, token in enumerate(tokens):
        if token in stops or (token == pad_id and pad_id not in stops):
            return index + (token in stops)
    return len(tokens)


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    config: GenerationConfig,
    stop: list[str],
) -> list[Completion]:
    ids = encode_prompts(tokenizer, prompts)
    check_length(model, max(map(len, ids)), config)
    inputs = _inputs(tokenizer, ids, model)
    started = time.perf_counter()
    # The tokenizer lets generate recognise the config's stop strings across token boundaries.
    output = model.generate(**inputs, generation_config=config, tokenizer=tokenizer)
    seconds = time.perf_counter() - started
    generated = new_tokens(model, output, inputs["input_ids"].shape[1]).tolist()
    per_prompt = sequences_per_prompt(config)
    completions = []
    for row, tokens in enumerate(generated):
        text, length = completion_text(tokenizer, tokens, config, stop)
        prompt_index = row // per_prompt
        completions.append(
            Completion(prompts[prompt_index], text, len(ids[prompt_index]), length, seconds)
        )
    return completions


UNFINISHED = "\ufffd"


def whole_characters(text: str) -> str:
    """Decoded text without U+FFFD, which a byte-level tokenizer's decoding puts for bytes that
    are no whole UTF-8 character: a character the generation cut off, or bytes the model
    generated that never formed one."""
    return text.replace(UNFINISHED, "")


def completion_text(
    tokenizer, tokens: list[int], config: GenerationConfig, stop: list[str]
) -> tuple[str, int]:
    """A row of generated tokens as the completion's text (up to its end token, cut before a
    stop string, whole characters only) and its length in tokens."""
    length = _completion_length(tokens, config.eos_token_id, config.pad_token_id)
    text = whole_characters(tokenizer.decode(tokens[:length], skip_special_tokens=True))
    return cut_at_stop(text, stop), length


class StopAwareStreamer(TextStreamer):
    """Writes text as it is decoded, holding back what could still become a stop string."""

    def __init__(self, tokenizer, stop: list[str], write: Callable[[str], None]):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stop = [s for s in stop if s]
        self.write = write
        self.pending = ""
        self.stopped = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if self.stopped:
            return
        # TextStreamer writes a character its bytes have completed, never half of one; what
        # stayed unfinished (U+FFFD) is dropped, as in the completion's text.
        self.pending += whole_characters(text)
        cut = cut_at_stop(self.pending, self.stop)
        if len(cut) < len(self.pending):
            self.write(cut)
            self.stopped = True
            return
        held = 0 if stream_end else self._possible_stop_start()
        self.write(self.pending[: len(self.pending) - held])
        self.pending = self.pending[len(self.pending) - held :]

    def _possible_stop_start(self) -> int:
        """Length of the longest tail of `pending` that begins some stop string."""
        for size in range(min(len(self.pending), max(map(len, self.stop), default=0)), 0, -1):
            tail = self.pending[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0


@torch.inference_mode()
def generate_streaming(
    model,
    tokenizer,
    prompt: str,
    config: GenerationConfig,
    stop: list[str],
    write: Callable[[str], None],
) -> Completion:
    if beams(config) > 1 or sequences_per_prompt(config) > 1:
        raise UserError(
            "--stream shows one sequence as it grows: use it without --num-beams and "
            "--num-return-sequences"
        )
    ids = encode_prompts(tokenizer, [prompt])
    check_length(model, len(ids[0]), config)
    streamer = StopAwareStreamer(tokenizer, stop, write)
    started = time.perf_counter()
    output = model.generate(
        **_inputs(tokenizer, ids, model),
        generation_config=config,
        tokenizer=tokenizer,
        streamer=streamer,
    )
    seconds = time.perf_counter() - started
    tokens = new_tokens(model, output, len(ids[0]))[0].tolist()
    text, length = completion_text(tokenizer, tokens, config, stop)
    return Completion(prompt, text, len(ids[0]), length, seconds)


def fill_masks(model, tokenizer, prompts: list[str], top_k: int) -> list[dict]:
    """For a masked LM: the top-k fills of each prompt's mask token, with scores."""
    mask = tokenizer.mask_token
    missing = [p for p in prompts if mask not in p]
    if missing:
        raise UserError(
            f"this is a masked LM: every prompt needs the mask token {mask} "
            f"(not in: {missing[0]!r})",
            f'e.g. --prompt "The game was {mask} in Japan ."',
        )
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=top_k)
    results = []
    for prompt in prompts:
        fills = fill(prompt)
        if fills and isinstance(fills[0], list):  # several masks: one list per mask
            fills = fills[0]
        results.append(
            {
                "prompt": prompt,
                "fills": [
                    {"token": f["token_str"], "score": f["score"], "sequence": f["sequence"]}
                    for f in fills
                ],
            }
        )
    return results


def image_prompt(processor, prompt: str, *, with_image: bool) -> str:
    """The text the model reads: the checkpoint's chat template with an image turn when it
    has one, else the prompt with the processor's image placeholder in front (unless the
    prompt already places it)."""
    if getattr(processor, "chat_template", None):
        content = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": prompt})
        return processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )
    token = getattr(processor, "image_token", None)
    if with_image and token and token not in prompt:
        return f"{token}\n{prompt}"
    return prompt


@torch.inference_mode()
def generate_from_image(
    model: PreTrainedModel,
    processor,
    prompts: list[str],
    image,
    config: GenerationConfig,
    stop: list[str],
) -> list[Completion]:
    """Completions of each prompt about `image` (a PIL image, or None for text alone) by a
    vision-language model; one generate call per prompt."""
    tokenizer = processor.tokenizer
    completions = []
    for prompt in prompts:
        text = image_prompt(processor, prompt, with_image=image is not None)
        inputs = processor(
            images=[image] if image is not None else None, text=[text], return_tensors="pt"
        ).to(model.device)
        if "pixel_values" in inputs:  # the vision tower computes in the model's precision
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        prompt_tokens = inputs["input_ids"].shape[1]
        check_length(model, prompt_tokens, config)
        started = time.perf_counter()
        output = model.generate(**inputs, generation_config=config, tokenizer=tokenizer)
        seconds = time.perf_counter() - started
        for tokens in output[:, prompt_tokens:].tolist():
            text, length = completion_text(tokenizer, tokens, config, stop)
            completions.append(Completion(prompt, text, prompt_tokens, length, seconds))
    return completions

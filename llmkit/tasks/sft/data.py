"""Supervised fine-tuning data: three layouts, the chat template, and which tokens are trained.

Layouts (the task name says which; `task.columns` maps its fields to other column names):
- `sft/chat`: `messages`, a list of {role, content} turns (system, user, assistant, tool);
  every assistant turn is trained, its end-of-turn token included;
- `sft/completion`: `prompt` and `completion` texts; the completion (+ EOS) is trained;
- `sft/text`: `text`; every token (+ EOS) is trained.

Which tokens are trained is decided here, once, by character spans: the chat is rendered with
its template, and an assistant turn is what rendering that turn adds to the conversation
rendered up to it with the generation prompt. A token is trained (its label is its id) when it
starts inside such a span; every other label is -100. This works with any template, and the
same labels feed training and the --dry-run audit. TRL's SFTTrainer then takes the encoded
`input_ids` and `labels` as they are (its own masking needs `{% generation %}` markers in the
template, which most templates lack).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmkit.errors import UserError, did_you_mean
from llmkit.tasks.sft import SftKeys
from llmkit.tasks.splits import SplitSource, files_or_hub

IGNORED = -100
FIELDS = {"chat": ("messages",), "completion": ("prompt", "completion"), "text": ("text",)}
ROLES = ("system", "user", "assistant", "tool")
# ChatML (OpenAI's, used by Qwen and others): each turn between <|im_start|>role and <|im_end|>.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Special-token-like words a template writes literally, e.g. <|im_start|>, <|eot_id|>.
TEMPLATE_TOKEN = re.compile(r"<\|[^|\s'\"]+\|>")


@dataclass(frozen=True)
class Format:
    """How one run renders and ends its examples."""

    layout: str  # chat, completion or text
    end_of_turn: str  # the token that ends an answer (and stops generation)
    added_tokens: tuple[str, ...] = ()  # special tokens the vocabulary lacked, now added


def layout_of(keys: SftKeys) -> str:
    return keys.name.split("/", 1)[1]


def _template_text(choice: str) -> str:
    if choice == "chatml":
        return CHATML
    path = Path(choice)
    if not path.is_file():
        raise UserError(
            f"task.chat_template {choice} is neither chatml nor a file",
            "give chatml, or the path of a Jinja template file",
        )
    text = path.read_text(encoding="utf-8")
    try:
        ImmutableSandboxedEnvironment().parse(text)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(
            f"chat template {path} does not parse: {e.message} (line {e.lineno})"
        ) from None
    return text


def prepare_format(keys: SftKeys, tokenizer) -> Format:
    """The run's format; sets the tokenizer's chat template and adds the special tokens it
    needs (the model's embeddings must then be resized to len(tokenizer))."""
    layout = layout_of(keys)
    needed: list[str] = []
    if layout == "chat":
        if keys.chat_template:
            tokenizer.chat_template = _template_text(keys.chat_template)
        elif not tokenizer.chat_template:
            raise UserError(
                "the tokenizer has no chat template",
                "set task.chat_template: chatml (or the path of a Jinja template file)",
            )
        needed = list(dict.fromkeys(TEMPLATE_TOKEN.findall(tokenizer.chat_template)))
    default_end = "<|im_end|>" if "<|im_end|>" in needed else tokenizer.eos_token
    end_of_turn = keys.end_of_turn or default_end
    if end_of_turn is None:
        raise UserError(
            "the tokenizer has no EOS token to end answers with", "set task.end_of_turn"
        )
    if end_of_turn not in needed:
        needed.append(end_of_turn)
    vocabulary = tokenizer.get_vocab()
    missing = tuple(token for token in needed if token not in vocabulary)
    if missing:
        tokenizer.add_tokens(list(missing), special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or end_of_turn
    return Format(layout, end_of_turn, missing)


def _render_chat(messages: Any, tokenizer, where: str) -> tuple[str, list[tuple[int, int]]]:
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: messages must be a non-empty list of {{role, content}} turns")
    for turn in messages:
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise UserError(f"{where}: every turn needs a role and a text content, not {turn!r}")
        if turn.get("role") not in ROLES:
            raise UserError(
                f"{where}: unknown role {turn.get('role')!r}"
                f"{did_you_mean(str(turn.get('role')), ROLES)}",
                f"roles: {', '.join(ROLES)}",
            )

    def render(turns: list[dict], prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(
                turns, tokenize=False, add_generation_prompt=prompt
            )
        except jinja2.TemplateError as e:
            raise UserError(f"{where}: the chat template fails on this conversation: {e}") from e

    text = render(messages, False)
    spans = []
    for index, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        if not turn["content"].strip():
            raise UserError(f"{where}: assistant turn {index + 1} is empty")
        before, through = render(messages[:index], True), render(messages[: index + 1], False)
        if not (text.startswith(through) and through.startswith(before)):
            raise UserError(
                f"{where}: the chat template renders a conversation's beginning differently "
                "from the whole, so the assistant's turns cannot be found in it"
            )
        spans.append((len(before), len(through)))
    if not spans:
        raise UserError(f"{where} has no assistant turn: nothing to train on")
    return text, spans


def render(example: dict, fmt: Format, tokenizer, where: str) -> tuple[str, list]:
    """The example's text and the character spans that are trained."""
    if fmt.layout == "chat":
        return _render_chat(example["messages"], tokenizer, where)
    end = fmt.end_of_turn
    if fmt.layout == "completion":
        prompt, completion = example["prompt"], example["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise UserError(f"{where}: prompt and completion must be texts")
        if not completion.strip():
            raise UserError(f"{where} has an empty completion: nothing to train on")
        text = prompt + completion + ("" if completion.endswith(end) else end)
        return text, [(len(prompt), len(text))]
    text = example["text"]
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where} has an empty text")
    text += "" if text.endswith(end) else end
    return text, [(0, len(text))]


def encode_example(example: dict, fmt: Format, tokenizer, max_length: int, where: str):
    """(input_ids, labels) of one example, cut to max_length tokens."""
    text, spans = render(example, fmt, tokenizer, where)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [
        token if any(start <= offset < end for start, end in spans) else IGNORED
        for token, (offset, _) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    if fmt.layout == "chat":
        end_id = tokenizer.convert_tokens_to_ids(fmt.end_of_turn)
        if sum(label == end_id for label in labels) < len(spans):
            raise UserError(
                f"the chat template's end-of-turn token {fmt.end_of_turn} is not inside the "
                f"assistant's turns ({where}), so the model would never learn to stop",
                "set task.end_of_turn to the token the template ends an assistant turn with",
            )
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORED for label in labels):
        raise UserError(
            f"{where} has no trained token within task.max_length ({max_length} tokens): its "
            "prompt fills them",
            "raise task.max_length, or shorten the prompt",
        )
    return ids, labels


def encode_split(dataset: datasets.Dataset, fmt: Format, tokenizer, max_length: int, where: str):
    """`input_ids` and `labels` of every example; `where` names the split in messages."""

    def encode(example, index):
        named = f"{where}, example {index + 1}"
        ids, labels = encode_example(example, fmt, tokenizer, max_length, named)
        return {"input_ids": ids, "labels": labels}

    return dataset.map(
        encode, with_indices=True, remove_columns=dataset.column_names, desc="encode"
    )


def select_fields(dataset: datasets.Dataset, keys: SftKeys, where: str) -> datasets.Dataset:
    """The layout's fields, renamed from task.columns; an error naming the layout the columns
    do fit, when they fit another."""
    layout = layout_of(keys)
    renames = {
        column: field for field, column in keys.columns.items() if column in dataset.column_names
    }
    dataset = dataset.rename_columns(renames) if renames else dataset
    present = set(dataset.column_names)
    wanted = FIELDS[layout]
    if not set(wanted) <= present:
        fits = [name for name, fields in FIELDS.items() if set(fields) <= present]
        hint = (
            f"its columns fit sft/{fits[0]}: set task.name=sft/{fits[0]}"
            if fits
            else f"name the columns with task.columns, e.g. {{{wanted[0]}: <column>}}"
        )
        raise UserError(
            f"{where} has no {' and '.join(wanted)} column{'s' if len(wanted) > 1 else ''} for "
            f"{keys.name} (its columns: {', '.join(dataset.column_names)})",
            hint,
        )
    return dataset.select_columns(list(wanted))


def split_source(keys: SftKeys) -> SplitSource:
    """Local JSONL/JSON/parquet/CSV files (task.train_file, task.validation_file), or the hub
    dataset task.dataset."""

    return files_or_hub(keys, lambda dataset, where: select_fields(dataset, keys, where))


def supervised_share(encoded: datasets.Dataset) -> tuple[int, int]:
    """(trained tokens, all tokens) of an encoded split."""
    trained = total = 0
    for labels in encoded["labels"]:
        trained += sum(label != IGNORED for label in labels)
        total += len(labels)
    return trained, total


def marked(tokenizer, ids: list[int], labels: list[int]) -> str:
    """The example's text with its trained tokens between ⟦ and ⟧ (for the audit)."""
    pieces, run, trained = [], [], False
    for token, label in [*zip(ids, labels, strict=True), (None, None)]:
        is_trained = label is not None and label != IGNORED
        if token is None or is_trained != trained:
            if run:
                text = tokenizer.decode(run)
                pieces.append(f"⟦{text}⟧" if trained else text)
            run, trained = [], is_trained
        if token is not None:
            run.append(token)
    return "".join(pieces)

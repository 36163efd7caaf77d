"""POST /v1/completions and /v1/chat/completions, as OpenAI's API defines them.

Requests are checked by the models below (the fields llmkit serves; other OpenAI fields are
accepted and ignored); responses are the `openai` package's own types. Decoding goes through
`llmkit generate`'s path: the same DecodingOptions checks, the run's generation_config.json
defaults (greedy unless it says otherwise), the same prompt encoding and the same
completion text, so a greedy answer here is the one `llmkit generate` prints.

OpenAI's sampling fields map onto transformers': temperature 0 is greedy decoding, above 0
sampling at that temperature; top_p alone turns sampling on (as `generate --top-p` does);
`max_tokens` (or chat's `max_completion_tokens`) is max_new_tokens, at most what the model's
positions leave after the prompt — left out, the run's default, cut to fit.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from fastapi.responses import JSONResponse, StreamingResponse
from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel, ConfigDict, Field

from llmkit.errors import UserError
from llmkit.generation import DecodingOptions, check_length, encode_prompts, generation_config_for
from llmkit.serving.batcher import Answer, Batcher, Row
from llmkit.serving.errors import ApiError
from llmkit.serving.served import Served

MAX_CHOICES = 16  # n above this is refused: each choice is a row of a batch
MAX_STOPS = 4  # as OpenAI


class StreamOptions(BaseModel):
    include_usage: bool = False


class Decoding(BaseModel):
    """The fields both endpoints share."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS:
            raise ApiError(400, f"at most {MAX_STOPS} stop sequences", param="stop")
        return [s for s in stops if s]

    def options(self) -> DecodingOptions:
        sampling = None if self.temperature is None else self.temperature > 0
        return DecodingOptions(
            do_sample=sampling,
            temperature=self.temperature if sampling else None,
            top_p=self.top_p,
            stop=self.stops(),
        )


class CompletionRequest(Decoding):
    prompt: str | list[str]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(Decoding):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def _rows(served: Served, prompts: list[str], request: Decoding, budget: int | None) -> list[Row]:
    """Each prompt as `n` rows, each row's max_new_tokens set and checked against positions."""
    model, tokenizer = served.model, served.tokenizer
    try:
        config = generation_config_for(model, tokenizer, request.options())
    except UserError as e:
        raise ApiError(400, e.message) from e
    rows, stops = [], request.stops()
    for ids in encode_prompts(tokenizer, prompts):
        row_config = copy.deepcopy(config)
        if budget is not None:
            row_config.max_new_tokens = budget
        elif not model.config.is_encoder_decoder:  # the run's default, cut to what fits
            row_config.max_new_tokens = max(
                1, min(config.max_new_tokens, served.positions - len(ids))
            )
        try:
            check_length(model, len(ids), row_config)
        except UserError as e:
            message = e.message.replace("--max-new-tokens", "max_tokens")
            raise ApiError(400, message, param="max_tokens", code="context_length_exceeded") from e
        for _ in range(request.n):
            rows.append(Row(ids, row_config, stops, done=None, seed=request.seed))
    return rows


class Pending:
    """The rows of one request, answered on the server's event loop as the worker finishes
    them (and, streaming, their text as it grows)."""

    def __init__(self, rows: list[Row], streaming: bool):
        self.rows = rows
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.answers: list[Answer | None] = [None] * len(rows)
        for index, row in enumerate(rows):
            row.done = self._callback(index, "done")
            row.write = self._callback(index, "text") if streaming else None

    def _callback(self, index: int, what: str):
        def call(value) -> None:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (index, what, value))

        return call

    def cancel(self) -> None:
        for row in self.rows:
            row.cancelled = True

    async def events_until_done(self, deadline: float) -> AsyncIterator[tuple[int, str, object]]:
        left = len(self.rows)
        while left:
            timeout = deadline - time.monotonic()
            try:
                index, what, value = await asyncio.wait_for(self.events.get(), max(timeout, 0))
            except TimeoutError:
                raise ApiError(504, "the request took longer than the server's --timeout") from None
            if what == "done":
                if value.error is not None:
                    raise ApiError(500, f"generation failed: {value.error}", type="server_error")
                self.answers[index] = value
                left -= 1
            yield index, what, value


def _usage(rows: list[Row], answers: list[Answer]) -> CompletionUsage:
    prompt = sum(len(ids) for ids in {id(r.ids): r.ids for r in rows}.values())
    completion = sum(a.completion_tokens for a in answers)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _sse(item) -> str:
    data = item if isinstance(item, str) else item.model_dump_json(exclude_unset=True)
    return f"data: {data}\n\n"


async def _respond(
    served: Served, batcher: Batcher, rows: list[Row], request: Decoding, timeout: float, chat: bool
):
    kind = "chatcmpl" if chat else "cmpl"
    ident, created = f"{kind}-{uuid.uuid4().hex}", int(time.time())
    pending = Pending(rows, request.stream)
    deadline = time.monotonic() + timeout
    batcher.submit(rows)
    if not request.stream:
        try:
            async for _ in pending.events_until_done(deadline):
                pass
        finally:
            pending.cancel()  # a no-op for finished rows; frees the batch of a timed-out one
        answers = pending.answers
        usage = _usage(rows, answers)
        if chat:
            choices = [
                Choice(
                    index=i,
                    message=ChatCompletionMessage(role="assistant", content=a.text),
                    finish_reason=a.finish_reason,
                )
                for i, a in enumerate(answers)
            ]
            body = ChatCompletion(
                id=ident, object="chat.completion", created=created, model=served.name,
                choices=choices, usage=usage,
            )  # fmt: skip
        else:
            choices = [
                CompletionChoice(index=i, text=a.text, finish_reason=a.finish_reason)
                for i, a in enumerate(answers)
            ]
            body = Completion(
                id=ident, object="text_completion", created=created, model=served.name,
                choices=choices, usage=usage,
            )  # fmt: skip
        return JSONResponse(body.model_dump(exclude_none=True))

    def chunk(index: int, text: str | None = None, finish: str | None = None, role=None):
        if chat:
            delta = ChoiceDelta(role=role, content=text)
            choice = ChunkChoice(index=index, delta=delta, finish_reason=finish)
            return ChatCompletionChunk(
                id=ident, object="chat.completion.chunk", created=created, model=served.name,
                choices=[choice],
            )  # fmt: skip
        choice = CompletionChoice.model_construct(
            index=index, text=text or "", finish_reason=finish, logprobs=None
        )
        return Completion.model_construct(
            id=ident, object="text_completion", created=created, model=served.name,
            choices=[choice],
        )  # fmt: skip

    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    async def stream() -> AsyncIterator[str]:
        try:
            if chat:
                for index in range(len(rows)):
                    yield _sse(chunk(index, text="", role="assistant"))
            async for index, what, value in pending.events_until_done(deadline):
                if what == "text" and value:
                    yield _sse(chunk(index, text=value))
                elif what == "done":
                    yield _sse(chunk(index, finish=value.finish_reason))
            if include_usage:
                usage = _usage(rows, pending.answers)
                if chat:
                    last = ChatCompletionChunk(
                        id=ident, object="chat.completion.chunk", created=created,
                        model=served.name, choices=[], usage=usage,
                    )  # fmt: skip
                else:
                    last = Completion.model_construct(
                        id=ident, object="text_completion", created=created,
                        model=served.name, choices=[], usage=usage,
                    )  # fmt: skip
                yield _sse(last)
        except ApiError as error:  # the stream has begun: the error goes in it
            yield _sse(json.dumps(error.body()))
        finally:  # also when the client has gone: its rows leave their batch
            pending.cancel()
        yield _sse("[DONE]")

    return StreamingResponse(stream(), media_type="text/event-stream")


async def complete(served: Served, batcher: Batcher, request: CompletionRequest, timeout: float):
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if not prompts or any(not p for p in prompts):
        raise ApiError(400, "the prompt is empty", param="prompt")
    rows = _rows(served, prompts, request, request.max_tokens)
    return await _respond(served, batcher, rows, request, timeout, chat=False)


async def chat(served: Served, batcher: Batcher, request: ChatRequest, timeout: float):
    tokenizer = served.tokenizer
    if not tokenizer.chat_template:
        raise ApiError(
            400,
            f"{served.name} has no chat template: use /v1/completions, or fine-tune it on "
            "chats first (llmkit finetune --recipe sft-chat)",
            param="messages",
        )
    messages = [{"role": m.role, "content": m.text()} for m in request.messages]
    try:
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # a template's own checks (raise_exception), e.g. roles out of order
        message = f"the chat template refused these messages: {e}"
        raise ApiError(400, message, param="messages") from e
    budget = request.max_completion_tokens or request.max_tokens
    rows = _rows(served, [prompt], request, budget)
    return await _respond(served, batcher, rows, request, timeout, chat=True)

"""Dynamic batching of generation requests for `llmkit serve`.

One worker thread owns the model. Requests wait in a queue as rows (a request asking for n
choices is n rows); whenever the worker is free it takes every row waiting (up to
`max_rows`, after a few milliseconds for requests sent at the same moment), groups the rows
that can share one `generate` call — the same decoding settings, stop strings and seed; the
token budgets may differ — and runs each group as one left-padded batch, exactly as
`llmkit generate` batches its prompts. So a greedy answer is the one `generate` gives.

Each row finishes on its own: at its end token, its stop string, its own `max_tokens`, or when
its client has gone; it is answered then, not when the batch's longest row ends, and the
batch stops when every row has finished. A stopping criterion that `generate` calls after
every step sees the new tokens, streams each row's text (held back at word boundaries and
before a possible stop string, as `generate --stream` does) and says which rows are done.
"""

from __future__ import annotations

import copy
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList, set_seed

from llmkit.generation import StopAwareStreamer, _inputs, completion_text

GATHER_SECONDS = 0.005  # how long a free worker waits for requests sent at the same moment


@dataclass
class Answer:
    """A row's outcome, given to its `done` callback (on the worker thread)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop": end token or stop string; "length": max_tokens
    error: Exception | None = None


@dataclass(eq=False)
class Row:
    ids: list[int]  # the prompt's tokens
    config: GenerationConfig  # its max_new_tokens is this row's own budget
    stop: list[str]
    done: Callable[[Answer], None]
    write: Callable[[str], None] | None = None  # streamed text, for a streaming request
    seed: int | None = None
    cancelled: bool = False  # set by the server when the client has gone or timed out
    tokens: list[int] = field(default_factory=list)

    def batch_key(self) -> str:
        """Rows with the same key can share a `generate` call."""
        settings = {k: v for k, v in self.config.to_dict().items() if k != "max_new_tokens"}
        return json.dumps([settings, self.stop, self.seed], sort_keys=True, default=str)


class RowTracker(StoppingCriteria):
    """Called by `generate` after each new token: streams each row's text and finishes the rows
    that are done (their end token, a stop string, their budget, a cancelled request)."""

    def __init__(self, rows: list[Row], tokenizer, config: GenerationConfig):
        self.rows, self.tokenizer = rows, tokenizer
        stops = config.eos_token_id
        self.ends = set(stops if isinstance(stops, list) else [stops])
        self.finished = [False] * len(rows)
        self.streamers = [
            StopAwareStreamer(tokenizer, row.stop, row.write) if row.write else None for row in rows
        ]
        for streamer in self.streamers:
            if streamer is not None:
                streamer.next_tokens_are_prompt = False  # it is fed generated tokens only

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, -1].tolist()
        for index, row in enumerate(self.rows):
            if self.finished[index]:
                continue
            if row.cancelled:
                self.finish(index, "cancelled")
                continue
            row.tokens.append(new[index])
            streamer = self.streamers[index]
            if streamer is not None:
                streamer.put(torch.tensor([new[index]]))
            if new[index] in self.ends or (streamer is not None and streamer.stopped):
                self.finish(index, "stop")
            elif len(row.tokens) >= row.config.max_new_tokens:
                self.finish(index, "length")
            elif row.stop and self._reached_stop(row):
                self.finish(index, "stop")
        return torch.tensor(self.finished, device=input_ids.device)

    def _reached_stop(self, row: Row) -> bool:
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        return any(s in text for s in row.stop if s)

    def finish(self, index: int, reason: str) -> None:
        self.finished[index] = True
        row = self.rows[index]
        if reason == "cancelled":
            return
        streamer = self.streamers[index]
        if streamer is not None:
            streamer.end()  # what it still held back
        text, length = completion_text(self.tokenizer, row.tokens, row.config, row.stop)
        row.done(Answer(text, len(row.ids), length, reason))

    def finish_all(self, error: Exception | None = None) -> None:
        for index, row in enumerate(self.rows):
            if self.finished[index]:
                continue
            if error is not None:
                self.finished[index] = True
                row.done(Answer(prompt_tokens=len(row.ids), error=error))
            else:  # generate ended on its own (its budget is the longest row's)
                self.finish(index, "length")


class Batcher:
    def __init__(self, model, tokenizer, max_rows: int = 32):
        self.model, self.tokenizer, self.max_rows = model, tokenizer, max_rows
        self.queue: queue.Queue[Row | None] = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="llmkit-generate", daemon=True)
        self.batches: list[int] = []  # rows per generate call, for the benchmark and tests

    def start(self) -> None:
        self.thread.start()

    def submit(self, rows: list[Row]) -> None:
        for row in rows:
            self.queue.put(row)

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        self.queue.put(None)
        self.thread.join()

    def _gather(self, first: Row) -> tuple[list[Row], bool]:
        rows, closing = [first], False
        deadline = time.monotonic() + GATHER_SECONDS
        while len(rows) < self.max_rows:
            try:
                row = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if row is None:
                closing = True
                break
            rows.append(row)
        return rows, closing

    def _work(self) -> None:
        closing = False
        while not closing:
            first = self.queue.get()
            if first is None:
                return
            rows, closing = self._gather(first)
            groups: dict[str, list[Row]] = {}
            for row in rows:
                groups.setdefault(row.batch_key(), []).append(row)
            for group in groups.values():
                self._generate([row for row in group if not row.cancelled])

    @torch.inference_mode()
    def _generate(self, rows: list[Row]) -> None:
        if not rows:
            return
        self.batches.append(len(rows))
        config = copy.deepcopy(rows[0].config)
        config.max_new_tokens = max(row.config.max_new_tokens for row in rows)
        inputs = _inputs(self.tokenizer, [row.ids for row in rows], self.model)
        tracker = RowTracker(rows, self.tokenizer, config)
        if rows[0].seed is not None:
            set_seed(rows[0].seed)
        try:
            self.model.generate(
                **inputs,
                generation_config=config,
                tokenizer=self.tokenizer,
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        except Exception as error:  # one bad batch must not stop the server
            tracker.finish_all(error)
            return
        tracker.finish_all()

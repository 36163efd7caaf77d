"""What tests share besides fixtures (those are in conftest.py): paths, the tiny model's
settings, and small helpers for reading a command's output and the corpus pipeline."""

import json
import os
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A model and corpus small enough to train in seconds on 2 CPU cores; each test adds the
# steps and settings it is about.
TINY_MODEL = ["data.seq_len=64", "tokenizer.vocab_size=1000", "model.hidden=64", "model.heads=2"]

# Tiny models trained once per test session, for the commands that use a trained model
# (eval-ppl, generate, finetune). They learn WikiText-2 valid (a fixture), not the built-in
# Shakespeare: the tasks they are fine-tuned on (GLUE, SQuAD chats) are modern English, which
# a 1,000-entry tokenizer of Shakespeare spends too many tokens on.
TINY = [
    *TINY_MODEL,
    f"data.train={FIXTURES / 'wikitext-2-valid.txt'}",
    "model.layers=2",
    "train.batch_size=16",
    "train.max_steps=60",
    "train.lr=2e-3",
    "data.validation_fraction=0",
]


def built_once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """(folder, summary): `build(folder)` run once per test session, by whichever pytest-xdist
    worker asks first (the others wait on a file lock), in the session's common temporary
    folder; the summary it returns is kept beside the folder for the others. What is built
    this way is read, never changed: a test that changes it works on a copy."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder all workers' temporary folders are in
    folder, summary = shared / name, shared / f"{name}.json"
    with FileLock(shared / f"{name}.lock"):
        if not summary.is_file():
            summary.write_text(json.dumps(build(folder), default=str))
    return folder, json.loads(summary.read_text())


def set_args(overrides) -> list[str]:
    """Recipe overrides as command-line arguments: --set k=v --set ..."""
    return [arg for value in overrides for arg in ("--set", value)]


def json_line(stdout: str) -> dict:
    """The summary a command printed with --json: the last line of its stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def invoke(*args: str):
    """Run `llmkit ARGS` in-process: (the CliRunner result, its --json summary or None)."""
    from typer.testing import CliRunner

    from llmkit.cli import app

    result = CliRunner().invoke(app, list(args))
    summary = json_line(result.stdout) if result.exit_code == 0 and "--json" in args else None
    return result, summary


def finetune(recipe: str, out, *overrides: str, extra=()):
    """`llmkit finetune --recipe RECIPE -o OUT --json` with --set OVERRIDES: (result, summary)."""
    args = ["finetune", "--recipe", recipe, "-o", str(out), "--json", *extra]
    return invoke(*args, *set_args(overrides))


def read_rows(src: str = "builtin", **data) -> list[str]:
    """A source's rows as the corpus pipeline streams them (cleaned by the defaults)."""
    from llmkit.data.corpus import corpus_rows
    from llmkit.recipe import DataConfig

    stream = corpus_rows(DataConfig(**data), src, split="train", what="read")
    return [row for batch in stream.batches for row in batch]


def pack_rows(rows, tokenizer, seq_len, layout, folder, **options):
    """Pack `rows` into `folder` in batches of 500; (the memory-mapped blocks, stats)."""
    import datasets

    from llmkit.data.packing import pack_into_blocks

    batches = (rows[i : i + 500] for i in range(0, len(rows), 500))
    stats = pack_into_blocks(batches, tokenizer, seq_len, layout, Path(folder), **options)
    return datasets.load_from_disk(str(folder)), stats


class StopAt(TrainerCallback):
    """A Trainer callback that stands in for a killed job: training ends right after `step`
    (and its checkpoint)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True

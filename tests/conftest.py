"""Every test runs offline, with its own packed-block cache."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.pop("LLMKIT_DATA_DIR", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LLMKIT_CACHE", str(tmp_path_factory.mktemp("llmkit-cache")))


@pytest.fixture(scope="session")
def builtin_corpus() -> Path:
    from llmkit.data.sources import BUILTIN_CORPUS

    return BUILTIN_CORPUS


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


@pytest.fixture(scope="session")
def builtin_rows() -> list[str]:
    return read_rows()


@pytest.fixture(scope="session")
def wikitext_raw_test() -> Path:
    """WikiText-2 raw test rows: the whole split when ../shared/data has it, else a slice."""
    full = SHARED_DATA / "wikitext-2-raw-hfrows" / "wiki.test.raw"
    return full if full.is_file() else FIXTURES / "wikitext-2-raw-test-head.raw"


@pytest.fixture
def shared_data():
    """shared_data("glue/SST-2/dev.tsv"): the path, or a skip with the reason."""

    def find(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.exists():
            pytest.skip(f"needs ../shared/data/{relative} (present in CI, absent in a plain clone)")
        return path

    return find


# A model and corpus small enough to train in seconds on 2 CPU cores; each test adds the
# steps and settings it is about.
TINY_MODEL = ["data.seq_len=64", "tokenizer.vocab_size=1000", "model.hidden=64", "model.heads=2"]


def set_args(overrides) -> list[str]:
    """Recipe overrides as command-line arguments: --set k=v --set ..."""
    return [arg for value in overrides for arg in ("--set", value)]


# Tiny models trained once per test session on the built-in WikiText, for the commands that
# use a trained model (eval-ppl, generate, finetune).
TINY = [
    *TINY_MODEL,
    "model.layers=2",
    "train.batch_size=16",
    "train.max_steps=60",
    "train.lr=2e-3",
    "data.validation_fraction=0",
]


def _trained(tmp_path_factory, recipe, objective):
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.recipe import load_recipe

    out = tmp_path_factory.mktemp(f"trained-{objective}") / "run"
    run_pretrain(load_recipe(recipe, TINY), objective, output_dir=out)
    return out


@pytest.fixture(scope="session")
def trained_clm(tmp_path_factory) -> Path:
    return _trained(tmp_path_factory, "gpt2-tiny", "clm")


@pytest.fixture(scope="session")
def trained_mlm(tmp_path_factory) -> Path:
    return _trained(tmp_path_factory, "bert-tiny", "mlm")


class StopAt(TrainerCallback):
    """A Trainer callback that stands in for a killed job: training ends right after `step`
    (and its checkpoint)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True

"""Every test runs offline, with its own packed-block cache. Fixtures only; what tests share
otherwise is in helpers.py.

`make test` runs the suite in one worker process per core (pytest-xdist). Each worker, and
every process a test starts, then computes on one thread: two workers with a pool of threads
each would fight over the cores (torch's threads spin while they wait) and run slower than
one. The tiny models that many tests use are trained once for the whole run, by whichever
worker needs one first (`helpers.built_once`)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.pop("LLMKIT_DATA_DIR", None)
if os.environ.get("PYTEST_XDIST_WORKER"):
    for threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[threads] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import FIXTURES, SHARED_DATA, TINY, built_once, invoke, read_rows, set_args  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: end-to-end runs of a minute or more (`make test-fast` skips them)"
    )


def pytest_collection_modifyitems(config, items):
    """The end-to-end runs marked slow start first (the sort keeps the order otherwise): the
    last tests to start are then short ones, and no worker is left alone with a long one."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LLMKIT_CACHE", str(tmp_path_factory.mktemp("llmkit-cache")))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: the small real slices every test may read."""
    return FIXTURES


@pytest.fixture(scope="session")
def wikitext_valid() -> Path:
    """WikiText-2 valid, tokenized v1: a plain-text corpus of Wikipedia paragraphs."""
    return FIXTURES / "wikitext-2-valid.txt"


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


def _trained(tmp_path_factory, name: str, recipe: str, objective: str, overrides) -> Path:
    """A run trained once per test session, shared by every worker."""
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.recipe import load_recipe

    def train(folder: Path) -> dict:
        return run_pretrain(load_recipe(recipe, overrides), objective, output_dir=folder)

    return built_once(tmp_path_factory, name, train)[0]


@pytest.fixture(scope="session")
def trained_clm(tmp_path_factory) -> Path:
    return _trained(tmp_path_factory, "trained-clm", "gpt2-tiny", "clm", TINY)


@pytest.fixture(scope="session")
def trained_mlm(tmp_path_factory) -> Path:
    return _trained(tmp_path_factory, "trained-mlm", "bert-tiny", "mlm", TINY)


@pytest.fixture(scope="session")
def chinese_mlm(tmp_path_factory) -> Path:
    """bert-chinese-mini at a tiny size, pretrained with whole-word masking (jieba's words)
    on the hand-written Chinese sentences: its tokenizer holds GB 2312's characters."""
    pytest.importorskip("rjieba", reason="whole-word masking of Chinese needs llmkit[chinese]")
    overrides = [
        f"data.train={FIXTURES / 'chinese' / 'essays.txt'}",
        "data.seq_len=64",
        "data.validation_fraction=0.1",
        "tokenizer.vocab_size=8000",
        "model.layers=2",
        "model.hidden=128",
        "model.heads=2",
        "model.dropout=0",
        "train.max_steps=60",
        "train.batch_size=8",
        "train.lr=1e-3",
        "train.eval_every=60",
    ]
    return _trained(tmp_path_factory, "chinese-mlm", "bert-chinese-mini", "mlm", overrides)


@pytest.fixture(scope="session")
def trained_clm_128(tmp_path_factory) -> Path:
    """A causal LM with room for a prompt and its answer (128 positions, hidden 128), for
    supervised fine-tuning."""
    overrides = [*TINY, "data.seq_len=128", "model.hidden=128", "model.heads=4"]
    overrides += ["train.max_steps=150"]
    return _trained(tmp_path_factory, "trained-clm-128", "gpt2-tiny", "clm", overrides)


@pytest.fixture(scope="session")
def qa_lora_run(tmp_path_factory, trained_mlm) -> Path:
    """An extractive QA LoRA run on the tiny masked LM (4 steps on the SQuAD fixture)."""
    squad = FIXTURES / "squad"

    def train(folder: Path) -> dict:
        overrides = [f"model.path={trained_mlm}", "model.lora.r=4", "train.max_steps=4"]
        overrides += [f"task.train_file={squad / 'train.json'}"]
        overrides += [f"task.validation_file={squad / 'dev.json'}", "task.doc_stride=16"]
        overrides += ["task.max_train_examples=40", "task.max_eval_examples=8"]
        args = ["finetune", "--recipe", "qa-squad", "-o", str(folder), "--json"]
        result, summary = invoke(*args, *set_args(overrides))
        assert result.exit_code == 0, result.output
        return summary

    return built_once(tmp_path_factory, "qa-lora", train)[0]


@pytest.fixture(scope="session")
def chat_run(tmp_path_factory, trained_clm_128) -> tuple[Path, dict]:
    """(folder, summary) of a 4-step sft/chat run: ChatML template, end-of-turn stop."""

    def train(folder: Path) -> dict:
        overrides = [f"model.path={trained_clm_128}", "train.max_steps=4"]
        overrides += ["task.generate_examples=4"]
        args = ["finetune", "--recipe", "sft-chat", "-o", str(folder), "--json"]
        result, summary = invoke(*args, *set_args(overrides))
        assert result.exit_code == 0, result.output
        return summary

    return built_once(tmp_path_factory, "chat-run", train)


@pytest.fixture
def cli():
    """Run `llmkit ARGS` in-process: `result, summary = cli("eval-ppl", ..., "--json")`, the
    summary being the command's --json line (None without --json or on failure)."""
    return invoke

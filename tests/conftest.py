"""Every test runs offline, with its own packed-block cache. Fixtures only; what tests share
otherwise is in helpers.py."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.pop("LLMKIT_DATA_DIR", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import FIXTURES, SHARED_DATA, TINY, invoke, read_rows  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: end-to-end runs of a minute or more (`make test-fast` skips them)"
    )


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LLMKIT_CACHE", str(tmp_path_factory.mktemp("llmkit-cache")))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: the small real slices every test may read."""
    return FIXTURES


@pytest.fixture(scope="session")
def builtin_corpus() -> Path:
    from llmkit.data.sources import BUILTIN_CORPUS

    return BUILTIN_CORPUS


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


@pytest.fixture(scope="session")
def trained_clm_128(tmp_path_factory) -> Path:
    """A causal LM with room for a prompt and its answer (128 positions, hidden 128), for
    supervised fine-tuning."""
    from llmkit.commands.pretrain import run_pretrain
    from llmkit.recipe import load_recipe

    overrides = [*TINY, "data.seq_len=128", "model.hidden=128", "model.heads=4"]
    overrides += ["train.max_steps=150"]
    out = tmp_path_factory.mktemp("trained-clm-128") / "run"
    run_pretrain(load_recipe("gpt2-tiny", overrides), "clm", output_dir=out)
    return out


@pytest.fixture
def cli():
    """Run `llmkit ARGS` in-process: `result, summary = cli("eval-ppl", ..., "--json")`, the
    summary being the command's --json line (None without --json or on failure)."""
    return invoke

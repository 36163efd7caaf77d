# Everything a developer or CI runs. PYTHON may point at a virtualenv's interpreter.
PYTHON ?= python3
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1

.PHONY: install test lint demo bench clean

install:  ## torch first, as the CPU wheel: an unpinned torch pulls GBs of CUDA
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check llmkit tests benchmarks
	$(PYTHON) -m ruff format --check llmkit tests benchmarks

demo:  ## the whole pipeline on the built-in corpus, in a few CPU minutes
	$(PYTHON) -m llmkit tokenize --recipe tokenizer-byte-bpe --set data.encode=true --output-dir runs/demo-tokenizer --overwrite

bench:
	$(PYTHON) benchmarks/tokenize_pack.py

clean:
	rm -rf runs .pytest_cache .ruff_cache

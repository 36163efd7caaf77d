# Everything a developer or CI runs. PYTHON may point at a virtualenv's interpreter.
PYTHON ?= python3
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1

.PHONY: install test test-fast lint demo bench clean

install:  ## torch first, as the CPU wheel: an unpinned torch pulls GBs of CUDA
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev,eval,serve,chinese]"

# One worker per core (pytest-xdist); an idle worker takes tests queued for a busy one.
PYTEST = $(PYTHON) -m pytest -q -n auto --dist worksteal

test:
	$(PYTEST)

test-fast:  ## the inner loop: everything but the end-to-end runs marked slow
	$(PYTEST) -m "not slow"

lint:
	$(PYTHON) -m ruff check llmkit tests benchmarks
	$(PYTHON) -m ruff format --check llmkit tests benchmarks

demo:  ## tokenize → pretrain-clm → pretrain-mlm on the built-in corpus (180 s on 2 idle cores)
	$(PYTHON) -m llmkit tokenize --recipe tokenizer-byte-bpe --output-dir runs/demo/tokenizer --overwrite \
		--set tokenizer.vocab_size=4096 --set data.encode=true --set data.seq_len=128
	$(PYTHON) -m llmkit pretrain-clm --recipe gpt2-tiny --output-dir runs/demo/gpt2-tiny --overwrite \
		--set tokenizer.path=runs/demo/tokenizer
	$(PYTHON) -m llmkit pretrain-mlm --recipe bert-tiny --output-dir runs/demo/bert-tiny --overwrite

bench:
	$(PYTHON) -m benchmarks.run_all
	$(PYTHON) -m benchmarks.time_to_quality --steps 800
	$(PYTHON) -m benchmarks.nanochat_tuning --steps 800
	$(PYTHON) -m benchmarks.time_to_quality_masked --minutes 8
	$(PYTHON) -m benchmarks.serve
	$(PYTHON) -m benchmarks.chinese_words
	$(PYTHON) -m benchmarks.family_throughput

clean:
	rm -rf runs .pytest_cache .ruff_cache

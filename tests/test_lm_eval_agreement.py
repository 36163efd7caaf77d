"""llmkit's word/byte perplexity against lm-evaluation-harness itself, where it is installed
(it is not a dependency: pip install lm_eval to run this)."""

import importlib.util
import math
from pathlib import Path

import pytest

from llmkit.commands.eval_ppl import run_eval_ppl
from llmkit.data.documents import build_documents, count_words

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed")


def harness_detokenizer():
    folder = Path(lm_eval.__file__).parent / "tasks" / "wikitext"
    spec = importlib.util.spec_from_file_location(
        "preprocess_wikitext", folder / "preprocess_wikitext.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.wikitext_detokenizer


def test_word_and_byte_perplexity_are_the_harness_figures(trained_clm, wikitext_raw_test, tmp_path):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    rows = [r for r in wikitext_raw_test.read_bytes().decode("utf-8").split("\r\n") if r][:120]
    sample = tmp_path / "wiki.sample.raw"
    sample.write_text("\n".join(rows) + "\n", encoding="utf-8")
    documents = build_documents(rows, structured=False, wikitext=True, detokenize=True)
    detokenize = harness_detokenizer()
    assert all(detokenize({"page": d.text}) == d.scored for d in documents)

    lm = HFLM(pretrained=str(trained_clm), batch_size=1, max_length=64, device="cpu")
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(d.scored,), idx=i)
        for i, d in enumerate(documents)
    ]
    log_likelihood = sum(lm.loglikelihood_rolling(requests, disable_tqdm=True))
    words = sum(count_words(d.text) for d in documents)
    utf8 = sum(len(d.text.encode("utf-8")) for d in documents)
    ours = run_eval_ppl(str(trained_clm), str(sample), max_length=64, batch_size=8)
    assert ours["word_perplexity"] == pytest.approx(math.exp(-log_likelihood / words), rel=1e-6)
    assert ours["byte_perplexity"] == pytest.approx(math.exp(-log_likelihood / utf8), rel=1e-6)
    assert ours["bits_per_byte"] == pytest.approx(-log_likelihood / utf8 / math.log(2), rel=1e-6)

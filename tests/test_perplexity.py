"""llmkit's batched perplexities against plain, one-window-at-a-time computations."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from llmkit.commands.eval_ppl import run_eval_ppl
from llmkit.data.documents import build_documents, count_words
from llmkit.perplexity import Window, rolling_windows, score_windows, sliding_windows


@pytest.fixture(scope="module")
def wikitext_sample(tmp_path_factory, wikitext_raw_test):
    """Three real WikiText articles (raw, HF rows) as a file named like WikiText's own."""
    rows = wikitext_raw_test.read_bytes().decode("utf-8").split("\r\n")
    heads = [
        i for i, row in enumerate(rows) if row.startswith(" = ") and not row.startswith(" = = ")
    ]
    path = tmp_path_factory.mktemp("wikitext") / "wiki.sample.raw"
    path.write_text("\n".join(rows[: heads[3]]) + "\n", encoding="utf-8")
    return path


def plain_token_nll(model, ids, max_length, stride):
    """The HF guide's loop, one window at a time, counting exactly the tokens it scores."""
    nll, count, previous_end = 0.0, 0, 0
    ids = torch.tensor([ids])
    for begin in range(0, ids.shape[1], stride):
        end = min(begin + max_length, ids.shape[1])
        window = ids[:, begin:end]
        labels = window.clone()
        labels[:, : window.shape[1] - (end - previous_end)] = -100
        with torch.no_grad():
            logits = model(window).logits[:, :-1]
        shifted = labels[:, 1:]
        nll += F.cross_entropy(
            logits.transpose(1, 2), shifted, ignore_index=-100, reduction="sum"
        ).item()
        count += (shifted != -100).sum().item()
        previous_end = end
        if end == ids.shape[1]:
            break
    return nll, count


def plain_document_log_likelihood(model, ids, prefix_id, max_length):
    """lm-evaluation-harness's rolling windows, written out: one window per forward pass."""
    total, predicted = 0.0, 0
    while predicted < len(ids):
        count = min(max_length, len(ids) - predicted)
        if predicted == 0:
            inputs = [prefix_id] + ids[: count - 1]
        else:
            inputs = ids[predicted + count - max_length - 1 : predicted + count - 1]
        targets = ids[predicted : predicted + count]
        with torch.no_grad():
            logits = model(torch.tensor([inputs])).logits[0, -count:]
        total += logits.log_softmax(-1).gather(1, torch.tensor(targets)[:, None]).sum().item()
        predicted += count
    return total


def test_rolling_windows_are_the_harness_windows():
    # lm-evaluation-harness's own example: 34 tokens, windows of 10, prefix -100.
    windows = list(rolling_windows(list(range(34)), -100, 10))
    assert [(w.input_ids, w.targets) for w in windows] == [
        ([-100, *range(0, 9)], list(range(0, 10))),
        (list(range(9, 19)), list(range(10, 20))),
        (list(range(19, 29)), list(range(20, 30))),
        (list(range(23, 33)), list(range(30, 34))),
    ]


@pytest.mark.parametrize(("max_length", "stride"), [(64, 32), (64, 64), (48, 16), (50, 37)])
def test_token_word_and_byte_perplexity_equal_plain_loops(
    trained_clm, wikitext_sample, max_length, stride
):
    model = AutoModelForCausalLM.from_pretrained(trained_clm).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_clm)
    rows = wikitext_sample.read_text(encoding="utf-8").split("\n")[:-1]
    results = {
        batch: run_eval_ppl(
            str(trained_clm),
            str(wikitext_sample),
            max_length=max_length,
            stride=stride,
            batch_size=batch,
        )
        for batch in (1, 8)
    }
    # Token perplexity over the rows joined by blank lines.
    nll, count = plain_token_nll(
        model, tokenizer("\n\n".join(rows))["input_ids"], max_length, stride
    )
    # Word/byte perplexity over the articles, detokenized for scoring as the harness does.
    documents = build_documents(rows, structured=False, wikitext=True, detokenize=True)
    assert len(documents) == 3
    log_likelihood = sum(
        plain_document_log_likelihood(
            model,
            tokenizer(d.scored, add_special_tokens=False)["input_ids"],
            tokenizer.eos_token_id,
            max_length,
        )
        for d in documents
    )
    words = sum(count_words(d.text) for d in documents)
    utf8 = sum(len(d.text.encode()) for d in documents)
    for result in results.values():
        assert result["tokens"] == count
        assert result["token_perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
        assert result["word_perplexity"] == pytest.approx(
            math.exp(-log_likelihood / words), rel=1e-5
        )
        assert result["byte_perplexity"] == pytest.approx(
            math.exp(-log_likelihood / utf8), rel=1e-5
        )
        assert result["bits_per_byte"] == pytest.approx(
            -log_likelihood / utf8 / math.log(2), rel=1e-5
        )
        assert (result["documents"], result["words"], result["bytes"]) == (3, words, utf8)


@pytest.fixture
def torch_threads():
    """Set torch's intra-op threads for one test, and put them back."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_batches_on_separate_cpu_threads_score_exactly_as_one(
    trained_clm, wikitext_sample, torch_threads
):
    model = AutoModelForCausalLM.from_pretrained(trained_clm).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_clm)
    ids = tokenizer(wikitext_sample.read_text(encoding="utf-8"))["input_ids"]
    # Windows of every length (the documents' last ones are short), so batches are padded.
    windows = list(sliding_windows(ids, 64, 48))
    windows += [w for cut in (5, 70, 300) for w in rolling_windows(ids[:cut], 0, 64)]
    scores = {}
    for threads in (1, 2):  # one batch at a time; two side by side, one thread each
        torch_threads(threads)
        scored: list[int] = []
        scores[threads] = score_windows(
            model, windows, batch_size=4, pad_id=0, on_window=scored.append
        )
        assert torch.get_num_threads() == threads  # put back after scoring
        assert sum(scored) == sum(len(w.targets) for w in windows)
    assert scores[2] == scores[1]  # the same floats, in the windows' order
    for index in (0, len(windows) // 2, -1):  # each score is its own window's
        window = windows[index]
        with torch.no_grad():
            logits = model(torch.tensor([window.input_ids])).logits[0, -len(window.targets) :]
        expected = logits.log_softmax(-1).gather(1, torch.tensor(window.targets)[:, None]).sum()
        assert scores[2][index] == pytest.approx(expected.item(), rel=1e-5)


def test_an_error_in_one_batch_stops_the_scoring(trained_clm, torch_threads):
    model = AutoModelForCausalLM.from_pretrained(trained_clm).eval()
    torch_threads(2)
    windows = list(sliding_windows(list(range(40)) * 8, 32, 16))
    windows[len(windows) // 2] = Window([10**9] * 8, [1])  # not a token id
    with pytest.raises(IndexError):
        score_windows(model, windows, batch_size=2, pad_id=0)
    assert torch.get_num_threads() == 2


def test_every_token_with_context_is_scored_once(trained_clm, wikitext_sample):
    tokenizer = AutoTokenizer.from_pretrained(trained_clm)
    rows = wikitext_sample.read_text(encoding="utf-8").split("\n")[:-1]
    total = len(tokenizer("\n\n".join(rows))["input_ids"])
    for max_length, stride in [(64, 1), (64, 63), (30, 7)]:
        result = run_eval_ppl(
            str(trained_clm), str(wikitext_sample), max_length=max_length, stride=stride
        )
        assert result["tokens"] == total - 1  # all but the stream's first token
    # Disjoint windows (stride = max_length): each window's first token has no context.
    result = run_eval_ppl(str(trained_clm), str(wikitext_sample), max_length=64, stride=64)
    assert result["tokens"] == total - result["windows"]


def test_pseudo_perplexity_equals_masking_one_token_at_a_time(trained_mlm, tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("The game was released in Japan .\nIt was a success with critics .\n")
    model = AutoModelForMaskedLM.from_pretrained(trained_mlm).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_mlm)
    ids = tokenizer("\n\n".join(text.read_text().splitlines()), add_special_tokens=False)[
        "input_ids"
    ]
    max_length = 10  # several [CLS] ... [SEP] blocks
    total = 0.0
    for start in range(0, len(ids), max_length - 2):
        block = [
            tokenizer.cls_token_id,
            *ids[start : start + max_length - 2],
            tokenizer.sep_token_id,
        ]
        for position in range(1, len(block) - 1):
            masked = list(block)
            masked[position] = tokenizer.mask_token_id
            with torch.no_grad():
                logits = model(torch.tensor([masked])).logits[0, position]
            total += logits.log_softmax(-1)[block[position]].item()
    expected = math.exp(-total / len(ids))
    for batch in (1, 4):
        result = run_eval_ppl(str(trained_mlm), str(text), max_length=max_length, batch_size=batch)
        assert result["objective"] == "mlm" and result["tokens"] == len(ids)
        assert result["pseudo_perplexity"] == pytest.approx(expected, rel=1e-5)

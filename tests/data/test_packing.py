import datasets
import numpy as np
import pytest

from llmkit.data.corpus import load_text_corpus, packed_blocks
from llmkit.data.packing import pack_into_blocks
from llmkit.errors import UserError
from llmkit.recipe import DataConfig, TokenizerConfig
from llmkit.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def texts():
    return load_text_corpus(DataConfig(), "builtin", split="train").texts


def batches_of(dataset):
    for batch in dataset.iter(batch_size=2000):
        yield batch["text"]


@pytest.fixture(scope="module")
def gpt_tokenizer(texts):
    return train_tokenizer(batches_of(texts), TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def bert_tokenizer(texts):
    return train_tokenizer(batches_of(texts), TokenizerConfig(type="wordpiece", vocab_size=1000))


def test_clm_blocks_are_full_and_hold_every_token(texts, gpt_tokenizer):
    seq_len = 128
    blocks, stats = pack_into_blocks(texts, gpt_tokenizer, seq_len, "clm")
    ids = np.array(blocks["input_ids"])
    assert ids.shape == (stats.blocks, seq_len)
    # An independent count: each document alone, plus one EOS after it.
    docs = [gpt_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts["text"]]
    stream = [t for doc in docs for t in (*doc, gpt_tokenizer.eos_token_id)]
    assert stats.tokens == sum(map(len, docs))
    assert ids.size + stats.dropped_tokens == len(stream) and stats.dropped_tokens < seq_len
    assert ids.reshape(-1).tolist() == stream[: ids.size]
    assert gpt_tokenizer.pad_token_id not in ids
    assert (ids == gpt_tokenizer.eos_token_id).sum() == len(docs) - stream[ids.size :].count(
        gpt_tokenizer.eos_token_id
    )


def test_mlm_blocks_are_wrapped_in_cls_and_sep(texts, bert_tokenizer):
    blocks, stats = pack_into_blocks(texts, bert_tokenizer, 64, "mlm")
    ids = np.array(blocks["input_ids"])
    assert ids.shape == (stats.blocks, 64)
    assert (ids[:, 0] == bert_tokenizer.cls_token_id).all()
    assert (ids[:, -1] == bert_tokenizer.sep_token_id).all()
    assert bert_tokenizer.pad_token_id not in ids
    body_tokens = stats.tokens + stats.documents  # a [SEP] closes every document
    assert stats.blocks * 62 + stats.dropped_tokens == body_tokens


def test_mlm_needs_cls_and_sep(texts, gpt_tokenizer):
    with pytest.raises(UserError, match="CLS"):
        pack_into_blocks(texts, gpt_tokenizer, 64, "mlm")


def test_a_corpus_smaller_than_one_block_is_a_user_error(gpt_tokenizer):
    tiny = datasets.Dataset.from_dict({"text": ["only a few words"]})
    with pytest.raises(UserError, match="too small for one block of 512"):
        pack_into_blocks(tiny, gpt_tokenizer, 512, "clm")


def test_the_second_run_reuses_the_cache(gpt_tokenizer):
    data = DataConfig(seq_len=256)
    first = packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train")
    second = packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train")
    assert (first.reused, second.reused) == (False, True)
    assert second.path == first.path and second.cleaning is None
    assert second.blocks["input_ids"] == first.blocks["input_ids"]
    assert second.stats == first.stats
    shorter = packed_blocks(DataConfig(seq_len=128), "builtin", gpt_tokenizer, "clm", split="train")
    cleaned = packed_blocks(
        DataConfig(seq_len=256, clean={"dedup": True}),
        "builtin",
        gpt_tokenizer,
        "clm",
        split="train",
    )
    assert not shorter.reused and not cleaned.reused
    assert len({first.path, shorter.path, cleaned.path}) == 3


def test_the_cache_follows_the_corpus_file(tmp_path, gpt_tokenizer, texts):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts["text"][:400]))
    data = DataConfig(seq_len=64)
    first = packed_blocks(data, str(corpus), gpt_tokenizer, "clm", split="train")
    corpus.write_text("\n".join(texts["text"][:300]))
    changed = packed_blocks(data, str(corpus), gpt_tokenizer, "clm", split="train")
    assert not changed.reused and changed.stats.blocks < first.stats.blocks


def test_an_interrupted_cache_entry_is_not_reused(gpt_tokenizer, tmp_path):
    data = DataConfig(seq_len=256, cache_dir=str(tmp_path))
    first = packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train")
    (tmp_path / "blocks" / first.path.rsplit("/", 1)[-1] / "llmkit_stats.json").unlink()
    again = packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train")
    assert not again.reused and again.stats.blocks == first.stats.blocks
    assert packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train").reused


def test_worker_processes_give_exactly_the_single_process_blocks(texts, gpt_tokenizer, monkeypatch):
    from llmkit.data import packing

    single, single_stats = pack_into_blocks(texts, gpt_tokenizer, 128, "clm", num_proc=1)
    monkeypatch.setattr(packing, "PARALLEL_MIN_ROWS", 100)
    monkeypatch.setattr(packing, "CHUNK_ROWS", 300)  # 9 chunks over 2 workers, out of step
    assert packing._worker_count(len(texts), 2) == 2
    seen = []
    parallel, parallel_stats = pack_into_blocks(
        texts, gpt_tokenizer, 128, "clm", num_proc=2, on_rows=seen.append
    )
    assert sum(seen) == len(texts)
    assert parallel["input_ids"] == single["input_ids"]
    parallel_stats.seconds = single_stats.seconds
    assert parallel_stats == single_stats

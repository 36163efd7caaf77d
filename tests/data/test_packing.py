import numpy as np
import pytest
from helpers import pack_rows

from llmkit.data.corpus import packed_blocks
from llmkit.data.packing import token_dtype
from llmkit.errors import UserError
from llmkit.recipe import DataConfig, TokenizerConfig
from llmkit.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def texts(builtin_rows):
    return builtin_rows


def batches_of(rows):
    for start in range(0, len(rows), 2000):
        yield rows[start : start + 2000]


@pytest.fixture(scope="module")
def gpt_tokenizer(texts):
    return train_tokenizer(batches_of(texts), TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def bert_tokenizer(texts):
    return train_tokenizer(batches_of(texts), TokenizerConfig(type="wordpiece", vocab_size=1000))


def hand_packed(tokenizer, texts, seq_len):
    """The CLM stream computed independently: each document alone, then one EOS."""
    docs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return docs, [t for doc in docs for t in (*doc, tokenizer.eos_token_id)]


def test_clm_blocks_are_full_and_hold_every_token(texts, gpt_tokenizer, tmp_path):
    seq_len = 128
    blocks, stats = pack_rows(texts, gpt_tokenizer, seq_len, "clm", tmp_path / "b")
    ids = np.array(blocks["input_ids"])
    assert ids.shape == (stats.blocks, seq_len)
    docs, stream = hand_packed(gpt_tokenizer, texts, seq_len)
    assert stats.tokens == sum(map(len, docs))
    assert ids.size + stats.dropped_tokens == len(stream) and stats.dropped_tokens < seq_len
    assert ids.reshape(-1).tolist() == stream[: ids.size]
    assert gpt_tokenizer.pad_token_id not in ids
    assert (ids == gpt_tokenizer.eos_token_id).sum() == len(docs) - stream[ids.size :].count(
        gpt_tokenizer.eos_token_id
    )


def test_blocks_are_uint16_arrow_shards_mapped_from_disk(texts, gpt_tokenizer, tmp_path):
    folder = tmp_path / "b"
    one, _ = pack_rows(texts, gpt_tokenizer, 128, "clm", folder / "one")
    # ~40 kB shards: the same blocks spread over several files, each mapped, none copied.
    many, _ = pack_rows(texts, gpt_tokenizer, 128, "clm", folder / "many", shard_bytes=40_000)
    assert many.features["input_ids"].feature.dtype == "uint16"
    files = [f["filename"] for f in many.cache_files]
    assert len(files) > 5 and all(f.startswith(str(folder / "many")) for f in files)
    assert many["input_ids"] == one["input_ids"]
    assert len(many.data.table.to_batches()) >= len(files)  # memory-mapped batches, not a copy
    assert token_dtype(gpt_tokenizer) == np.uint16
    assert token_dtype(range(70_000)) == np.uint32  # len() of the vocabulary is what counts


def test_max_tokens_stops_after_whole_blocks(texts, gpt_tokenizer, tmp_path, monkeypatch):
    from llmkit.data import packing

    full, _ = pack_rows(texts, gpt_tokenizer, 128, "clm", tmp_path / "full")
    monkeypatch.setattr(packing, "CHUNK_CHARS", 20_000)
    budget, stats = pack_rows(
        texts, gpt_tokenizer, 128, "clm", tmp_path / "budget", max_tokens=128 * 50 + 7
    )
    assert stats.blocks == len(budget) == 50
    assert budget["input_ids"] == full["input_ids"][:50]
    # 6,400 tokens are ~27k characters: two chunks, and the rest of the corpus is not used.
    assert stats.characters <= 2 * 20_000 + max(map(len, texts))
    with pytest.raises(UserError, match="less than one block"):
        pack_rows(texts, gpt_tokenizer, 128, "clm", tmp_path / "none", max_tokens=100)


def test_mlm_blocks_are_wrapped_in_cls_and_sep(texts, bert_tokenizer, tmp_path):
    blocks, stats = pack_rows(texts, bert_tokenizer, 64, "mlm", tmp_path / "b")
    ids = np.array(blocks["input_ids"])
    assert ids.shape == (stats.blocks, 64)
    assert (ids[:, 0] == bert_tokenizer.cls_token_id).all()
    assert (ids[:, -1] == bert_tokenizer.sep_token_id).all()
    assert bert_tokenizer.pad_token_id not in ids
    body_tokens = stats.tokens + stats.documents  # a [SEP] closes every document
    assert stats.blocks * 62 + stats.dropped_tokens == body_tokens
    docs = [bert_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    body = [t for doc in docs for t in (*doc, bert_tokenizer.sep_token_id)]
    assert ids[:, 1:-1].reshape(-1).tolist() == body[: stats.blocks * 62]


def test_mlm_needs_cls_and_sep(texts, gpt_tokenizer, tmp_path):
    with pytest.raises(UserError, match="CLS"):
        pack_rows(texts, gpt_tokenizer, 64, "mlm", tmp_path / "b")


def test_a_corpus_smaller_than_one_block_is_a_user_error(gpt_tokenizer, tmp_path):
    with pytest.raises(UserError, match="too small for one block of 512"):
        pack_rows(["only a few words"], gpt_tokenizer, 512, "clm", tmp_path / "b")


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
    corpus.write_text("\n".join(texts[:400]))
    data = DataConfig(seq_len=64)
    first = packed_blocks(data, str(corpus), gpt_tokenizer, "clm", split="train")
    corpus.write_text("\n".join(texts[:300]))
    changed = packed_blocks(data, str(corpus), gpt_tokenizer, "clm", split="train")
    assert not changed.reused and changed.stats.blocks < first.stats.blocks


def test_an_interrupted_cache_entry_is_not_reused(gpt_tokenizer, tmp_path):
    data = DataConfig(seq_len=256, cache_dir=str(tmp_path))
    first = packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train")
    (tmp_path / "blocks" / first.path.rsplit("/", 1)[-1] / "llmkit_stats.json").unlink()
    again = packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train")
    assert not again.reused and again.stats.blocks == first.stats.blocks
    assert packed_blocks(data, "builtin", gpt_tokenizer, "clm", split="train").reused


def test_worker_processes_give_exactly_the_single_process_blocks(
    texts, gpt_tokenizer, monkeypatch, tmp_path
):
    from llmkit.data import packing

    single, single_stats = pack_rows(texts, gpt_tokenizer, 128, "clm", tmp_path / "1", num_proc=1)
    monkeypatch.setattr(packing, "CHUNK_CHARS", 90_000)  # 13 chunks over 2 workers, out of step
    started = []
    real_pool = packing.mp.get_context("fork").Pool
    monkeypatch.setattr(
        packing.mp,
        "get_context",
        lambda kind: type("C", (), {"Pool": lambda self, n: started.append(n) or real_pool(n)})(),
    )
    parallel, parallel_stats = pack_rows(
        texts, gpt_tokenizer, 128, "clm", tmp_path / "2", num_proc=2
    )
    assert started == [2]
    assert parallel["input_ids"] == single["input_ids"]
    parallel_stats.seconds = single_stats.seconds
    assert parallel_stats == single_stats

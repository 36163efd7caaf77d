"""Generated text is whole characters: a byte-level tokenizer splits a Chinese character into
several tokens, and neither a stream's chunks nor a completion's text may hold part of one."""

import torch
from transformers import AutoTokenizer, GenerationConfig

from llmkit.generation import StopAwareStreamer, completion_text
from llmkit.recipe import TokenizerConfig
from llmkit.tokenizer import save_tokenizer, train_tokenizer

SENTENCES = ["大规模语言模型的训练需要大量的文本。", "自然语言处理是人工智能的一个重要方向。"]


def byte_level(tmp_path):
    config = TokenizerConfig(type="byte-bpe", vocab_size=300, min_frequency=1)
    save_tokenizer(train_tokenizer(iter([SENTENCES * 3]), config), tmp_path)
    return AutoTokenizer.from_pretrained(tmp_path)


def test_streamed_chinese_is_whole_characters_in_every_chunk(tmp_path):
    tokenizer = byte_level(tmp_path)
    text = "我们训练模型。"  # characters the tokenizer has only as bytes
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text)  # some characters take several tokens
    chunks = []
    streamer = StopAwareStreamer(tokenizer, [], chunks.append)
    streamer.next_tokens_are_prompt = False
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert all("\ufffd" not in chunk for chunk in chunks) and "".join(chunks) == text
    for chunk in chunks:
        chunk.encode("utf-8")  # valid UTF-8 on its own


def test_a_completion_cut_inside_a_character_ends_before_it(tmp_path):
    tokenizer = byte_level(tmp_path)
    ids = tokenizer("我们", add_special_tokens=False)["input_ids"]
    config = GenerationConfig(eos_token_id=None, pad_token_id=None)
    cut = ids[:-1]  # the last character's final byte never came
    assert "\ufffd" in tokenizer.decode(cut)
    text, length = completion_text(tokenizer, cut, config, [])
    assert (text, length) == ("我", len(cut))

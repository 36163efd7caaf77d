import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from llmkit.data.packing import tokenizer_fingerprint
from llmkit.errors import UserError
from llmkit.recipe import TokenizerConfig
from llmkit.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer


def corpus_batches(path, batch=2000):
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for start in range(0, len(lines), batch):
        yield lines[start : start + batch]


def trained(path, tmp_path, **config):
    tokenizer = train_tokenizer(corpus_batches(path), TokenizerConfig(**config))
    save_tokenizer(tokenizer, tmp_path)
    return AutoTokenizer.from_pretrained(tmp_path)


def test_byte_bpe_round_trips_every_raw_wikitext_row(wikitext_valid, wikitext_raw_test, tmp_path):
    tokenizer = trained(wikitext_valid, tmp_path, type="byte-bpe", vocab_size=2000)
    rows = wikitext_raw_test.read_bytes().decode("utf-8").split("\r\n")
    assert len(rows) > 100
    mismatched = [r for r in rows if tokenizer.decode(tokenizer(r)["input_ids"]) != r]
    assert mismatched == []
    # The raw text holds characters the tokenized training text never showed: still no unknowns.
    ids = tokenizer("Ünïcödé → 東京 🙂")["input_ids"]
    assert tokenizer.unk_token_id not in ids


def test_gpt_style_special_tokens_survive_save_and_load(wikitext_valid, tmp_path):
    tokenizer = trained(wikitext_valid, tmp_path, type="byte-bpe", vocab_size=500)
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer("a b")["input_ids"] == tokenizer("a b", add_special_tokens=False)["input_ids"]
    assert "token_type_ids" not in tokenizer("a b")
    special_map = json.loads((tmp_path / "special_tokens_map.json").read_text())
    assert special_map["eos_token"] == "<|endoftext|>"


def test_wordpiece_encodes_a_pair_with_the_bert_template(wikitext_valid, tmp_path):
    tokenizer = trained(wikitext_valid, tmp_path, type="wordpiece", vocab_size=3000)
    assert (tokenizer.cls_token, tokenizer.sep_token, tokenizer.mask_token) == (
        "[CLS]",
        "[SEP]",
        "[MASK]",
    )
    assert (tokenizer.pad_token, tokenizer.unk_token) == ("[PAD]", "[UNK]")
    encoded = tokenizer("the game", "was released")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    a = tokenizer.tokenize("the game")
    b = tokenizer.tokenize("was released")
    assert tokens == ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
    assert encoded["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)


def test_roberta_style_wraps_pairs_with_double_separator(wikitext_valid, tmp_path):
    tokenizer = trained(wikitext_valid, tmp_path, type="byte-bpe", style="roberta", vocab_size=800)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a", "b")["input_ids"])
    assert tokens[0] == "<s>" and tokens.count("</s>") == 3 and tokenizer.mask_token == "<mask>"


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_bpe_and_unigram_train_and_load(wikitext_valid, tmp_path, kind):
    tokenizer = trained(wikitext_valid, tmp_path, type=kind, vocab_size=1500)
    assert 1000 <= len(tokenizer) <= 1500
    text = "The game was released in Japan in 2011 ."
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.unk_token == "<|unk|>"


def test_fingerprint_changes_with_the_vocabulary(wikitext_valid):
    small = train_tokenizer(corpus_batches(wikitext_valid), TokenizerConfig(vocab_size=400))
    again = train_tokenizer(corpus_batches(wikitext_valid), TokenizerConfig(vocab_size=400))
    larger = train_tokenizer(corpus_batches(wikitext_valid), TokenizerConfig(vocab_size=500))
    assert tokenizer_fingerprint(small) == tokenizer_fingerprint(again)
    assert tokenizer_fingerprint(small) != tokenizer_fingerprint(larger)


def test_loading_a_folder_without_a_tokenizer_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="holds no tokenizer"):
        load_tokenizer(tmp_path)


# Trains each type on the built-in corpus and saves it under argv[1]/<type>. The sizes are
# large enough for merges of equal counts to exist, where the trainers' hash-map order used to
# decide (WordPiece: 12,585 entries one run, 12,587 the next).
TRAIN_EACH_TYPE = """
import json, sys
from pathlib import Path
from llmkit.data.sources import BUILTIN_CORPUS
from llmkit.recipe import TokenizerConfig
from llmkit.tokenizer import save_tokenizer, train_tokenizer

lines = [json.loads(record)["text"] for record in BUILTIN_CORPUS.open(encoding="utf-8")]
sizes = {"byte-bpe": 8192, "bpe": 8000, "wordpiece": 30522, "unigram": 8000}
for kind, size in sizes.items():
    batches = (lines[i : i + 2000] for i in range(0, len(lines), 2000))
    config = TokenizerConfig(type=kind, vocab_size=size, lowercase=kind == "wordpiece")
    save_tokenizer(train_tokenizer(batches, config), Path(sys.argv[1]) / kind)
"""


def test_training_twice_writes_the_same_files_for_every_type(tmp_path):
    # Two processes, as two runs of a recipe are: hash-map order differs between processes.
    for name in ("first", "second"):
        subprocess.run([sys.executable, "-c", TRAIN_EACH_TYPE, str(tmp_path / name)], check=True)
    for kind in ("byte-bpe", "bpe", "wordpiece", "unigram"):
        first, second = tmp_path / "first" / kind, tmp_path / "second" / kind
        names = sorted(p.name for p in first.iterdir())
        assert names == sorted(p.name for p in second.iterdir()) and "tokenizer.json" in names
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), (kind, name)
    wordpiece = json.loads((tmp_path / "first" / "wordpiece" / "tokenizer.json").read_text())
    assert [t["content"] for t in wordpiece["added_tokens"]] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]  # the pieces numbered first for determinism are not special tokens


CHINESE = [
    "大规模语言模型的训练需要大量的文本。",
    "我们用PyTorch训练BERT模型，然后在下游任务上微调。",
    "自然语言处理是人工智能的一个重要方向。",
]


def test_wordpiece_decodes_chinese_without_spaces_between_characters(tmp_path):
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(CHINESE * 3) + "\nthe game was released in japan .\n")
    tokenizer = trained(corpus, tmp_path, type="wordpiece", vocab_size=300, min_frequency=1)
    assert tokenizer.tokenize("大规模") == ["大", "规", "模"]  # each character its own token
    for text in CHINESE:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    # spaces between Latin words, and around Latin punctuation, are what they were before
    english = "the game was released in japan ."
    assert tokenizer.decode(tokenizer(english, add_special_tokens=False)["input_ids"]) == (
        "the game was released in japan."
    )


def test_an_alphabet_of_common_characters_leaves_unseen_ones_known(tmp_path):
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(CHINESE * 3) + "\n")
    unseen = "春天来了，花开得很美。"  # common characters, none of them in the corpus
    plain = trained(corpus, tmp_path / "plain", type="wordpiece", vocab_size=400, min_frequency=1)
    assert plain.unk_token_id in plain(unseen)["input_ids"]
    seeded = trained(
        corpus, tmp_path / "seeded", type="wordpiece", vocab_size=8000, min_frequency=1,
        alphabet="cjk-simplified",
    )  # fmt: skip
    assert seeded.unk_token_id not in seeded(unseen)["input_ids"]
    assert seeded.decode(seeded(unseen, add_special_tokens=False)["input_ids"]) == unseen
    assert len(seeded) >= 6763  # GB 2312's characters, derived from the gb2312 codec


def test_an_alphabet_needs_room_and_a_character_level_tokenizer():
    with pytest.raises(UserError, match="leaves no room"):
        train_tokenizer(
            iter([CHINESE]), TokenizerConfig(type="bpe", alphabet="cjk", vocab_size=9000)
        )
    with pytest.raises(ValueError, match="byte-bpe already encodes every character"):
        TokenizerConfig(type="byte-bpe", alphabet="cjk")

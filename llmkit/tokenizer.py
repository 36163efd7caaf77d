"""Train, save and load tokenizers with the `tokenizers` library.

A trained tokenizer is returned as the transformers object users load later
(`AutoTokenizer.from_pretrained(run_dir)`), with the special tokens and pair template of the
model family it is for:
  gpt      <|endoftext|> as bos/eos (GPT-2's convention) and <|pad|> for batching
  bert     [CLS] a [SEP] b [SEP] with token type ids, [MASK], [PAD], [UNK]
  roberta  <s> a </s></s> b </s>, <mask>, <pad>, <unk>
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from llmkit.console import note
from llmkit.data.sampling import Sample
from llmkit.errors import UserError
from llmkit.recipe import TokenizerConfig

TRAIN_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class SpecialTokens:
    """Which strings play which role; `unk` is None where bytes make unknowns impossible."""

    bos: str | None
    eos: str | None
    unk: str | None
    pad: str
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None

    def as_kwargs(self) -> dict[str, str]:
        roles = {
            "bos_token": self.bos,
            "eos_token": self.eos,
            "unk_token": self.unk,
            "pad_token": self.pad,
            "cls_token": self.cls,
            "sep_token": self.sep,
            "mask_token": self.mask,
        }
        return {role: token for role, token in roles.items() if token is not None}

    def vocabulary(self) -> list[str]:
        """The special tokens in id order (ids 0, 1, ...), each once."""
        ordered = [self.pad, self.unk, self.cls, self.sep, self.mask, self.bos, self.eos]
        return list(dict.fromkeys(t for t in ordered if t is not None))


def special_tokens_for(style: str, byte_level: bool) -> SpecialTokens:
    if style == "bert":
        return SpecialTokens(
            bos=None, eos=None, unk="[UNK]", pad="[PAD]", cls="[CLS]", sep="[SEP]", mask="[MASK]"
        )
    if style == "roberta":
        return SpecialTokens(
            bos="<s>", eos="</s>", unk="<unk>", pad="<pad>", cls="<s>", sep="</s>", mask="<mask>"
        )
    # GPT-2 lets <|endoftext|> stand for unknown too; only a non-byte model needs a real one.
    eot = "<|endoftext|>"
    return SpecialTokens(bos=eot, eos=eot, unk=eot if byte_level else "<|unk|>", pad="<|pad|>")


# The special tokens each model family expects.
FAMILY_STYLE = {"gpt2": "gpt", "llama": "gpt", "bert": "bert", "roberta": "roberta"}


def resolve_style(config: TokenizerConfig, family: str | None = None) -> str:
    """`auto` follows the model family, else the tokenizer type (wordpiece means BERT)."""
    if config.style != "auto":
        return config.style
    if family in FAMILY_STYLE:
        return FAMILY_STYLE[family]
    return "bert" if config.type == "wordpiece" else "gpt"


def _post_processor(style: str, specials: SpecialTokens, tokenizer: Tokenizer):
    if style == "gpt":
        return None
    cls, sep = specials.cls, specials.sep
    ids = {cls: tokenizer.token_to_id(cls), sep: tokenizer.token_to_id(sep)}
    if style == "bert":
        return processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=list(ids.items()),
        )
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} {sep} $B {sep}",
        special_tokens=list(ids.items()),
    )


def _untrained_pipeline(config: TokenizerConfig, specials: SpecialTokens):
    """The tokenizers pipeline (model, normalizer, pre-tokenizer, decoder) and its trainer."""
    common = dict(
        vocab_size=config.vocab_size,
        special_tokens=specials.vocabulary(),
        show_progress=False,
    )
    if config.type == "byte-bpe":
        # Byte-level pieces make every string encodable and decode(encode(x)) == x exactly.
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            min_frequency=config.min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            **common,
        )
    elif config.type == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=specials.unk))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(min_frequency=config.min_frequency, **common)
    elif config.type == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(unk_token=specials.unk, **common)
    else:  # wordpiece
        tokenizer = Tokenizer(models.WordPiece(unk_token=specials.unk))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(min_frequency=config.min_frequency, **common)
    if config.lowercase and config.type != "wordpiece":
        tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer, trainer


def _with_canonical_ids(tokenizer: Tokenizer, specials: int) -> Tokenizer:
    """Number the learned vocabulary in a fixed order.

    The WordPiece and Unigram trainers learn the same pieces on every run but number them in
    hash-map order, so one recipe would give different token ids (and models, and cache
    keys) each time. Special tokens keep their leading ids; the learned pieces follow in string
    order (neither WordPiece's longest match nor Unigram's best path depends on ids).
    Unigram's piece scores themselves still vary slightly between trainings (up to ~4e-4 in
    log-probability, measured): a fixed tokenizer needs tokenizer.path.
    """
    state = json.loads(tokenizer.to_str())
    model = state["model"]
    if model["type"] == "WordPiece":
        by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
        rest = sorted(token for token, _ in by_id[specials:])
        model["vocab"] = {
            token: i for i, token in enumerate([t for t, _ in by_id[:specials]] + rest)
        }
    elif model["type"] == "Unigram":
        head, rest = model["vocab"][:specials], model["vocab"][specials:]
        model["vocab"] = head + sorted(rest, key=lambda piece: piece[0])
    return Tokenizer.from_str(json.dumps(state))


def train_tokenizer(
    batches: Iterator[list[str]],
    config: TokenizerConfig,
    *,
    total_rows: int | None = None,
    family: str | None = None,
) -> PreTrainedTokenizerFast:
    """Train on an iterator of text batches; return a ready transformers tokenizer."""
    style = resolve_style(config, family)
    specials = special_tokens_for(style, byte_level=config.type == "byte-bpe")
    tokenizer, trainer = _untrained_pipeline(config, specials)
    tokenizer.train_from_iterator(batches, trainer=trainer, length=total_rows)
    tokenizer = _with_canonical_ids(tokenizer, len(specials.vocabulary()))
    if tokenizer.get_vocab_size() <= len(specials.vocabulary()):
        raise UserError("the tokenizer learned no vocabulary: the corpus has too little text")
    post = _post_processor(style, specials, tokenizer)
    if post is not None:
        tokenizer.post_processor = post
    input_names = ["input_ids", "attention_mask"]
    if style == "bert":
        input_names.insert(1, "token_type_ids")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=input_names,
        # Keep " ." as " .": the cleanup would break decode(encode(x)) == x.
        clean_up_tokenization_spaces=False,
        **specials.as_kwargs(),
    )
    if config.max_length:
        wrapped.model_max_length = config.max_length
    return wrapped


def train_tokenizer_on(
    sample: Sample, config: TokenizerConfig, *, family: str | None = None
) -> PreTrainedTokenizerFast:
    """Train on a sample of a corpus's rows (data/sampling.py), fed in batches."""
    batches = sample.batches(TRAIN_BATCH_ROWS)
    tokenizer = train_tokenizer(batches, config, total_rows=len(sample.rows), family=family)
    if vocabulary_shortfall(tokenizer, config):
        note(
            f"[yellow]warning:[/] the tokenizer learned {len(tokenizer):,} entries, fewer than "
            f"the {config.vocab_size:,} of tokenizer.vocab_size: the corpus has no more pieces "
            "seen often enough (tokenizer.min_frequency); the model is sized to what it learned"
        )
    return tokenizer


def vocabulary_shortfall(tokenizer: PreTrainedTokenizerFast, config: TokenizerConfig) -> dict:
    """{"vocab_size_asked": N} for a run's summary when a trained tokenizer came out smaller
    than the N asked for, else nothing."""
    return {"vocab_size_asked": config.vocab_size} if len(tokenizer) < config.vocab_size else {}


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """save_pretrained, plus the special_tokens_map.json that older tools still read."""
    tokenizer.save_pretrained(directory)
    special_map = {role: str(token) for role, token in tokenizer.special_tokens_map.items()}
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerFast:
    directory = Path(path)
    if (
        not (directory / "tokenizer.json").is_file()
        and not (directory / "tokenizer_config.json").is_file()
    ):
        raise UserError(
            f"{directory} holds no tokenizer (no tokenizer.json)",
            "point tokenizer.path at a folder written by `llmkit tokenize` or save_pretrained",
        )
    try:
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the tokenizer in {directory}: {e}") from e

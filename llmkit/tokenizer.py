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
    Regex,
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
from llmkit.data.scripts import UNSPACED, common_characters
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
FAMILY_STYLE = {
    "gpt2": "gpt",
    "llama": "gpt",
    "nanochat": "gpt",
    "bert": "bert",
    "roberta": "roberta",
    "modernbert": "bert",
}


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


# WordPiece's normalizer makes each CJK ideograph its own token and its decoder puts a space
# before every token; once the decoder has joined the tokens into one string, a space next to
# a character of a script written without spaces is taken out again, so "大规模训练" decodes
# as itself, not "大 规 模 训 练" (spaces between Latin words stay).
SPACE_BY_UNSPACED = Regex(f"(?<=[{UNSPACED}]) | (?=[{UNSPACED}])")


def _untrained_pipeline(
    config: TokenizerConfig, specials: SpecialTokens, numbered_first: list[str] = ()
):
    """The tokenizers pipeline (model, normalizer, pre-tokenizer, decoder) and its trainer.
    `numbered_first`: pieces the trainer must number right after the special tokens."""
    common = dict(
        vocab_size=config.vocab_size,
        special_tokens=[*specials.vocabulary(), *numbered_first],
        show_progress=False,
    )
    if config.alphabet != "none":
        common["initial_alphabet"] = common_characters(config.alphabet)
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
        tokenizer.decoder = decoders.Sequence(
            [decoders.WordPiece(), decoders.Fuse(), decoders.Replace(SPACE_BY_UNSPACED, "")]
        )
        trainer = trainers.WordPieceTrainer(min_frequency=config.min_frequency, **common)
    if config.lowercase and config.type != "wordpiece":
        tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer, trainer


def _word_inner_characters(
    batches: list[list[str]], config: TokenizerConfig, specials: SpecialTokens
) -> list[str]:
    """The `##c` pieces (a character inside a word) of a WordPiece training, sorted.

    The WordPiece trainer numbers these pieces in hash-map order, and the ids break ties
    between equally frequent merges, so two trainings on one corpus could learn different
    vocabularies (tokenizers issue #1794). Naming them as pieces to number first fixes their
    ids. Which pieces they are costs one count of the corpus's words: a training that stops
    before its first merge.
    """
    tokenizer, trainer = _untrained_pipeline(config.model_copy(update={"vocab_size": 1}), specials)
    tokenizer.train_from_iterator(batches, trainer=trainer)
    return sorted(t for t in tokenizer.get_vocab() if t.startswith("##") and len(t) == 3)


# Unigram scores are rounded to this: the trainer adds likelihoods in hash-map order, so a
# score varies by up to ~4e-11 between trainings (measured); rounded, two trainings agree
# unless a score lies that close to a rounding boundary (about one tokenizer in 10^5).
UNIGRAM_SCORE_DIGITS = 6
# The step by which the Unigram trainer scores the characters it re-adds after pruning.
UNIGRAM_READDED_STEP = 1e-4


def _canonical(tokenizer: Tokenizer, specials: int, numbered_first: set[str]) -> Tokenizer:
    """The trained tokenizer, written the same way by every training on the same rows.

    - Pieces given to the trainer only to be numbered (`numbered_first`) are not special:
      they leave the added tokens.
    - The learned vocabulary is numbered in string order after the special tokens; the
      WordPiece and Unigram trainers number it in hash-map order (neither WordPiece's
      longest match nor Unigram's best path depends on ids).
    - Unigram: the characters the trainer re-adds after pruning get the lowest score plus
      1e-4 per character in hash-map order; they get it in string order instead, and every
      score is rounded (UNIGRAM_SCORE_DIGITS).
    """
    state = json.loads(tokenizer.to_str())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] not in numbered_first]
    model = state["model"]
    if model["type"] == "WordPiece":
        by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
        rest = sorted(token for token, _ in by_id[specials:])
        model["vocab"] = {
            token: i for i, token in enumerate([t for t, _ in by_id[:specials]] + rest)
        }
    elif model["type"] == "Unigram":
        head, rest = model["vocab"][:specials], model["vocab"][specials:]
        model["vocab"] = head + [
            [piece, round(score, UNIGRAM_SCORE_DIGITS)]
            for piece, score in sorted(_readded_in_order(rest), key=lambda p: p[0])
        ]
    return Tokenizer.from_str(json.dumps(state))


def _readded_in_order(pieces: list[list]) -> list[list]:
    """Unigram pieces with the re-added characters' scores given out in string order: they
    are the single characters scored lowest + k * 1e-4 (k = 0, 1, ...)."""
    lowest = min(score for _, score in pieces)
    steps = {}
    for index, (piece, score) in enumerate(pieces):
        k = (score - lowest) / UNIGRAM_READDED_STEP
        if len(piece) == 1 and abs(k - round(k)) < 1e-6:
            steps[index] = round(k)
    ks = sorted(steps.values())
    if ks != list(range(len(ks))):  # not the trainer's sequence: leave the scores alone
        return pieces
    readded = sorted(steps, key=lambda index: pieces[index][0])
    scores = {index: lowest + k * UNIGRAM_READDED_STEP for k, index in enumerate(readded)}
    return [[piece, scores.get(i, score)] for i, (piece, score) in enumerate(pieces)]


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
    if config.alphabet != "none":
        alphabet = len(common_characters(config.alphabet))
        if config.vocab_size <= alphabet + len(specials.vocabulary()):
            raise UserError(
                f"tokenizer.vocab_size {config.vocab_size:,} leaves no room for pieces beside "
                f"tokenizer.alphabet {config.alphabet} ({alphabet:,} characters)",
                f"raise tokenizer.vocab_size above {alphabet + len(specials.vocabulary()):,}",
            )
    inner: list[str] = []
    if config.type == "wordpiece":
        batches = list(batches)  # read twice; the rows are in memory already (a Sample)
        inner = _word_inner_characters(batches, config, specials)
    tokenizer, trainer = _untrained_pipeline(config, specials, inner)
    tokenizer.train_from_iterator(batches, trainer=trainer, length=total_rows)
    tokenizer = _canonical(tokenizer, len(specials.vocabulary()), set(inner))
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

"""Batch collators: transformers' own, with masking made fast for packed blocks.

`DataCollatorForLanguageModeling` finds special tokens by calling the tokenizer once per row
and needs character offsets for whole-word masking, which packed blocks do not carry. Both
are derived here from token ids alone, through lookup tables built once from the vocabulary:
a token continues a word when it is a WordPiece `##` piece, or a byte-level/Metaspace piece
without the leading-space marker (the rule BERT's whole-word masking used).
"""

from __future__ import annotations

import datasets
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

from llmkit.recipe import ObjectiveConfig

WORD_START_MARKERS = ("Ġ", "▁")  # byte-level BPE and Metaspace mark a preceding space


def continues_word(token: str, wordpiece: bool) -> bool:
    if wordpiece:
        return token.startswith("##")
    return not token.startswith(WORD_START_MARKERS) and token.isalnum()


class BlockMaskingCollator(DataCollatorForLanguageModeling):
    """MLM masking (80% [MASK], 10% random, 10% kept) with table lookups instead of loops."""

    def __post_init__(self) -> None:
        super().__post_init__()
        size = max(len(self.tokenizer), max(self.tokenizer.get_vocab().values()) + 1)
        self.special_table = torch.zeros(size, dtype=torch.bool)
        self.special_table[self.tokenizer.all_special_ids] = True
        self.continuation_table = torch.zeros(size, dtype=torch.bool)
        if self.whole_word_mask:
            wordpiece = type(self.tokenizer.backend_tokenizer.model).__name__ == "WordPiece"
            for token, index in self.tokenizer.get_vocab().items():
                self.continuation_table[index] = continues_word(token, wordpiece)

    def word_offsets(self, inputs: torch.Tensor) -> torch.Tensor:
        """Offsets that touch (end == next start) exactly where a token continues a word."""
        positions = 2 * torch.arange(inputs.shape[1]).expand_as(inputs)
        starts = positions - self.continuation_table[inputs].long()
        return torch.stack([starts, positions + 1], dim=-1)

    def torch_call(self, examples):
        if "labels" in examples[0]:  # masked once already (evaluation): keep those masks
            return {key: torch.tensor([e[key] for e in examples]) for key in examples[0]}
        return super().torch_call(examples)

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        if special_tokens_mask is None:
            special_tokens_mask = self.special_table[inputs]
        if self.whole_word_mask and offset_mapping is None:
            offset_mapping = self.word_offsets(inputs)
        return super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)


def mask_once(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    masking: ObjectiveConfig,
    *,
    seq_len: int,
    seed: int,
) -> datasets.Dataset:
    """The evaluation set masked once, with its own seeded generator.

    Random masks drawn anew at every evaluation would make evaluations at different steps
    score different tokens; fixed masks make the curve compare like with like. Rows are
    padded to seq_len so that batches stack without a tokenizer call.
    """
    masker = BlockMaskingCollator(
        tokenizer,
        mlm=True,
        mlm_probability=masking.mlm_probability,
        whole_word_mask=masking.whole_word_mask,
        pad_to_multiple_of=seq_len,
        seed=seed,
    )

    def apply(rows: dict[str, list]) -> dict[str, list]:
        examples = [
            dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)
        ]
        return {key: value.tolist() for key, value in masker(examples).items()}

    return dataset.map(
        apply,
        batched=True,
        batch_size=1024,
        keep_in_memory=True,  # never write beside the cached blocks
        new_fingerprint=f"masked-once-{seed}-{dataset._fingerprint}",
    )


def build_collator(
    objective: str, tokenizer: PreTrainedTokenizerFast, masking: ObjectiveConfig
) -> DataCollatorForLanguageModeling:
    if objective == "clm":
        # Labels are the inputs (the model shifts them); packed blocks hold no padding.
        return DataCollatorForLanguageModeling(tokenizer, mlm=False)
    # The global RNG, not a private generator: Trainer checkpoints it, so resuming continues
    # with the same masks an uninterrupted run would draw.
    return BlockMaskingCollator(
        tokenizer,
        mlm=True,
        mlm_probability=masking.mlm_probability,
        whole_word_mask=masking.whole_word_mask,
    )

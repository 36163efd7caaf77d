"""Batch collators: transformers' own, with masking made fast for packed blocks.

`DataCollatorForLanguageModeling` finds special tokens by calling the tokenizer once per row
and needs character offsets for whole-word masking, which packed blocks do not carry. Both
are derived here from token ids alone, through lookup tables built once from the vocabulary
(which token continues a word: words.vocabulary_rule). Blocks of text without spaces carry
their words from a segmenter instead (data/words.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

from llmkit.data.words import COLUMN as SEGMENTED_WORDS
from llmkit.data.words import vocabulary_rule
from llmkit.recipe import ObjectiveConfig

# Batches of variable-length examples are padded to a multiple of this: see
# DynamicPaddingCollator for why.
PAD_MULTIPLE = 8


@dataclass
class BlockMaskingCollator(DataCollatorForLanguageModeling):
    """MLM masking (80% [MASK], 10% random, 10% kept) with table lookups instead of loops.

    Masks are drawn from a generator seeded by `masking_seed` and the batch's own tokens, so
    a batch gets the same masks whenever it is collated. Trainer fetches the next batch
    before it saves a checkpoint's RNG state, so masks drawn from the global RNG would differ
    after a resume; these do not. A new epoch groups blocks into new batches, so it still
    draws new masks (dynamic masking).
    """

    masking_seed: int = 0
    # the batch being collated: its segmenter's word-continuation flags, when it has them
    segmented: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        size = max(len(self.tokenizer), max(self.tokenizer.get_vocab().values()) + 1)
        self.special_table = torch.zeros(size, dtype=torch.bool)
        self.special_table[self.tokenizer.all_special_ids] = True
        self.continuation_table = torch.zeros(size, dtype=torch.bool)
        if self.whole_word_mask:
            rule = torch.from_numpy(vocabulary_rule(self.tokenizer))
            self.continuation_table[: len(rule)] = rule

    @staticmethod
    def word_offsets(continues: torch.Tensor) -> torch.Tensor:
        """Offsets that touch (end == next start) exactly where a token continues a word."""
        positions = 2 * torch.arange(continues.shape[1]).expand_as(continues)
        starts = positions - continues.long()
        return torch.stack([starts, positions + 1], dim=-1)

    def torch_call(self, examples):
        if "labels" in examples[0]:  # masked once already (evaluation): keep those masks
            return {key: torch.tensor([e[key] for e in examples]) for key in examples[0]}
        self.generator = torch.Generator().manual_seed(self.batch_seed(examples))
        # A segmenter's words (packed beside the ids) replace the vocabulary's rule.
        self.segmented = None
        if SEGMENTED_WORDS in examples[0]:
            self.segmented = torch.tensor([e[SEGMENTED_WORDS] for e in examples], dtype=torch.bool)
            examples = [{k: v for k, v in e.items() if k != SEGMENTED_WORDS} for e in examples]
        return super().torch_call(examples)

    def batch_seed(self, examples) -> int:
        digest = hashlib.blake2b(str(self.masking_seed).encode(), digest_size=8)
        for example in examples:
            digest.update(np.asarray(example["input_ids"], dtype=np.int64).tobytes())
        return int.from_bytes(digest.digest(), "little") >> 1  # manual_seed takes < 2**63

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        if special_tokens_mask is None:
            special_tokens_mask = self.special_table[inputs]
        if self.whole_word_mask and offset_mapping is None:
            segmented = self.segmented
            continues = self.continuation_table[inputs] if segmented is None else segmented
            offset_mapping = self.word_offsets(continues)
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
        tokenizer, **masking_options(masking), pad_to_multiple_of=seq_len, masking_seed=seed
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
        remove_columns=[SEGMENTED_WORDS] if SEGMENTED_WORDS in dataset.column_names else None,
    )


def build_collator(
    objective: str, tokenizer: PreTrainedTokenizerFast, masking: ObjectiveConfig, *, seed: int = 0
) -> DataCollatorForLanguageModeling:
    if objective == "clm":
        # Labels are the inputs (the model shifts them); packed blocks hold no padding.
        return DataCollatorForLanguageModeling(tokenizer, mlm=False)
    # Packed blocks are all seq_len long; sentence pairs (NSP) vary and are padded per batch.
    multiple = PAD_MULTIPLE if masking.nsp else None
    return BlockMaskingCollator(
        tokenizer, **masking_options(masking), pad_to_multiple_of=multiple, masking_seed=seed
    )


def masking_options(masking: ObjectiveConfig) -> dict:
    # transformers' whole-word masking replaces every selected token with [MASK] (no random
    # or kept tokens); saying so here spares the user its warning.
    replace = (
        {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if masking.whole_word_mask else {}
    )
    return {
        "mlm": True,
        "mlm_probability": masking.mlm_probability,
        "whole_word_mask": masking.whole_word_mask,
        **replace,
    }


class DynamicPaddingCollator:
    """Pads each batch to its longest example (rounded up, see below), as
    `DataCollatorWithPadding` does, with the same outputs; it fills numpy arrays instead of
    going through `tokenizer.pad` (which converts every example), 1.5 → 0.2 ms per batch of
    32 SST-2 sentences: a measurable share of fine-tuning a small model on short texts.

    Lengths are rounded up to a multiple of `pad_to_multiple_of` (DataCollatorWithPadding's
    option). Why 8: batches of every length from 1 to max_length make each step allocate
    activations of a size the last did not have, and glibc's malloc then keeps a heap that grows
    with the steps (SST-2 on bert-tiny: +3.4% RSS from the second to the last quarter of 3,000
    steps, against +1.1% with multiples of 8; issue 20). Eight also suits GPU tensor cores.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerFast, pad_to_multiple_of: int = PAD_MULTIPLE
    ) -> None:
        self.multiple = pad_to_multiple_of
        self.pad_values = {
            "input_ids": tokenizer.pad_token_id,
            "token_type_ids": tokenizer.pad_token_type_id,
            "attention_mask": 0,
            "special_tokens_mask": 1,
        }
        self.left = tokenizer.padding_side == "left"

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        length += -length % self.multiple
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            if key in ("label", "labels", "label_ids"):
                batch["labels"] = torch.tensor([f[key] for f in features])
                continue
            if not isinstance(features[0][key], (list, tuple, np.ndarray)):
                # one value per example (QA's start/end positions): nothing to pad
                batch[key] = torch.tensor([f[key] for f in features])
                continue
            padded = np.full((len(features), length), self.pad_values.get(key, 0), np.int64)
            for row, feature in enumerate(features):
                values = feature[key]
                if self.left:
                    padded[row, length - len(values) :] = values
                else:
                    padded[row, : len(values)] = values
            batch[key] = torch.from_numpy(padded)
        return batch

"""Model configs assembled from the recipe (never downloaded), models built or loaded from them.

Families: gpt2 and llama (causal LM), bert and roberta (masked LM; bert also with next-sentence
prediction). The vocabulary comes from the tokenizer, padded to a multiple of
`model.vocab_multiple` so that matrix shapes suit GPU kernels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    BartConfig,
    BertConfig,
    BertForPreTraining,
    GPT2Config,
    LlamaConfig,
    ModernBertConfig,
    NanoChatConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    T5Config,
)

from llmkit.adapters import load_merged
from llmkit.checkpoints import checkpoint_options, is_adapter_dir, require_model_dir
from llmkit.errors import UserError
from llmkit.fast_path import check_attention, resolve_precision, use_fused_activations
from llmkit.recipe import ModelConfig
from llmkit.tokenizer import load_tokenizer

Objective = Literal["clm", "mlm"]
LanguageModeling = Literal["clm", "mlm", "seq2seq"]  # what a saved model does (inference)
FAMILY_OBJECTIVE: dict[str, Objective] = {
    "gpt2": "clm",
    "llama": "clm",
    "nanochat": "clm",
    "bert": "mlm",
    "roberta": "mlm",
    "modernbert": "mlm",
}
# Families whose embeddings and output layer are separate unless the recipe ties them.
UNTIED_FAMILIES = ("nanochat",)
# RoBERTa numbers positions from padding_idx + 1, so it needs two more position embeddings.
ROBERTA_POSITION_OFFSET = 2


def padded_vocab_size(tokens: int, multiple: int) -> int:
    return math.ceil(tokens / multiple) * multiple


def _check_shape(model: ModelConfig) -> None:
    if model.hidden % model.heads:
        raise UserError(
            f"model.hidden ({model.hidden}) must be divisible by model.heads ({model.heads})",
            "pick heads that divide hidden, e.g. hidden 256 with 4 heads",
        )
    grouped = ("llama", "nanochat")
    if model.kv_heads is not None and (model.family not in grouped or model.heads % model.kv_heads):
        raise UserError(
            "model.kv_heads is for the llama and nanochat families and must divide model.heads "
            f"(heads {model.heads}, kv_heads {model.kv_heads})"
        )


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    """pad/bos/eos ids for a model config; BERT-style tokenizers use [CLS]/[SEP] for bos/eos."""

    def first(*ids):
        return next((i for i in ids if i is not None), None)

    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": first(tokenizer.bos_token_id, tokenizer.cls_token_id),
        "eos_token_id": first(tokenizer.eos_token_id, tokenizer.sep_token_id),
    }


# Each family's names for the dropout probabilities that the recipe's one model.dropout sets.
DROPOUT_KEYS = {
    "gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"),
    "llama": ("attention_dropout",),
    "nanochat": ("attention_dropout",),
    "modernbert": ("attention_dropout", "mlp_dropout", "embedding_dropout"),
    "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    "roberta": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    "t5": ("dropout_rate",),
    "bart": ("dropout", "attention_dropout"),
}


def build_model_config(
    model: ModelConfig, *, tokens: int, seq_len: int, special_ids: dict[str, int | None]
) -> PretrainedConfig:
    """A transformers config for `model.family`, sized by the recipe and the tokenizer's size."""
    _check_shape(model)
    check_attention(model.attention)
    vocab = model.vocab_size or padded_vocab_size(tokens, model.vocab_multiple)
    positions = model.max_positions or seq_len
    tied = model.family not in UNTIED_FAMILIES
    special = {
        **special_ids,
        "tie_word_embeddings": tied if model.tie_embeddings is None else model.tie_embeddings,
        "initializer_range": model.initializer_range,
    }
    intermediate = model.intermediate or 4 * model.hidden
    # A gated MLP (SwiGLU, GeGLU) has three matrices: ~8/3 x hidden keeps a 4 x MLP's weights.
    gated_intermediate = model.intermediate or 32 * math.ceil(8 * model.hidden / 3 / 32)
    # The recipe's shape under transformers' common names, which each config maps to its own
    # (GPT-2's n_embd and n_layer, T5's d_model and num_heads, BART's encoder_layers, ...).
    shape = {
        "vocab_size": vocab,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
    }
    dropout = {key: model.dropout for key in DROPOUT_KEYS.get(model.family, ())}
    if model.family == "gpt2":
        config = GPT2Config(
            **shape, **dropout, n_positions=positions, n_inner=intermediate, **special
        )
    elif model.family in ("llama", "nanochat"):
        # nanochat: RoPE, QK-norm, ReLU² MLP (two matrices, so 4 x hidden), no biases, untied
        # embeddings, logits soft-capped at 15 (NanoChatConfig's defaults, as nanochat trains).
        llama = model.family == "llama"
        config = (LlamaConfig if llama else NanoChatConfig)(
            **shape,
            intermediate_size=gated_intermediate if llama else intermediate,
            num_key_value_heads=model.kv_heads or model.heads,
            max_position_embeddings=positions,
            **dropout,
            **special,
        )
    elif model.family == "modernbert":
        # RoPE, pre-norm, GeGLU, no biases, alternating local (128-token) and global attention.
        config = ModernBertConfig(
            **shape,
            intermediate_size=gated_intermediate,
            max_position_embeddings=positions,
            **dropout,
            cls_token_id=special_ids["bos_token_id"],
            sep_token_id=special_ids["eos_token_id"],
            **special,
        )
    elif model.family in ("bert", "roberta"):
        roberta = model.family == "roberta"
        config = (RobertaConfig if roberta else BertConfig)(
            **shape,
            intermediate_size=intermediate,
            **dropout,
            max_position_embeddings=positions + (ROBERTA_POSITION_OFFSET if roberta else 0),
            type_vocab_size=1 if roberta else 2,
            **special,
        )
    elif model.family == "t5":
        config = T5Config(
            **shape,
            d_kv=model.hidden // model.heads,
            d_ff=intermediate,
            num_decoder_layers=model.layers,
            **dropout,
            initializer_factor=1.0,
            tie_word_embeddings=model.tie_embeddings,
            pad_token_id=special_ids["pad_token_id"],
            eos_token_id=special_ids["eos_token_id"],
            decoder_start_token_id=special_ids["pad_token_id"],  # T5 starts from padding
        )
    elif model.family == "bart":
        config = BartConfig(
            **shape,  # the encoder's layers and heads; the decoder's are the same
            decoder_layers=model.layers,
            decoder_attention_heads=model.heads,
            encoder_ffn_dim=intermediate,
            decoder_ffn_dim=intermediate,
            max_position_embeddings=positions,
            **dropout,
            init_std=model.initializer_range,
            scale_embedding=False,
            decoder_start_token_id=special_ids["eos_token_id"],  # BART starts from </s>
            forced_eos_token_id=special_ids["eos_token_id"],
            **special,
        )
    else:
        raise UserError(
            "the recipe needs model.family (gpt2, llama, nanochat, bert, roberta, modernbert, "
            "t5, bart) or model.path"
        )
    config._attn_implementation = model.attention
    return config


# T5's positions are relative: any length fits (memory is the limit, not the model).
RELATIVE_POSITIONS = 1 << 16


def model_positions(config: PretrainedConfig) -> int:
    """How many tokens one sequence may hold."""
    positions = (
        getattr(config, "n_positions", None)
        or getattr(config, "max_position_embeddings", None)
        or RELATIVE_POSITIONS
    )
    return positions - (ROBERTA_POSITION_OFFSET if config.model_type == "roberta" else 0)


def model_class(objective: Objective, nsp: bool):
    if nsp:
        return BertForPreTraining
    return AutoModelForCausalLM if objective == "clm" else AutoModelForMaskedLM


def _declare_loss(model: PreTrainedModel, objective: Objective) -> PreTrainedModel:
    # transformers infers `loss_type` from the class name, and GPT2LMHeadModel has no
    # "ForCausalLM" in it. Trainer then counts one token too many per row when it averages
    # the shifted loss (GPT-2's loss came out 127/128 of the true value at seq_len 128).
    if objective == "clm" and getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    return model


def build_model(config: PretrainedConfig, objective: Objective, nsp: bool) -> PreTrainedModel:
    cls = model_class(objective, nsp)
    if cls is BertForPreTraining:
        return BertForPreTraining(config)
    model = cls.from_config(config, attn_implementation=config._attn_implementation)
    return _declare_loss(model, objective)


def load_model(
    path: str, objective: Objective, nsp: bool, *, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Continue from a checkpoint: an llmkit run dir or any local save_pretrained folder."""
    folder = require_model_dir(path, "model.path")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    family_objective = FAMILY_OBJECTIVE.get(config.model_type)
    if family_objective is not None and family_objective != objective:
        raise UserError(
            f"model.path {path} is a {config.model_type} model, which is not a "
            f"{'causal' if objective == 'clm' else 'masked'} LM"
        )
    try:
        model = load_pretrained(
            folder, model_class(objective, nsp), trust_remote_code=trust_remote_code
        )
        return _declare_loss(model, objective)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the model in {path}: {e}") from e


def load_pretrained(folder: Path, auto_class, *, config=None, trust_remote_code=False, **options):
    """A run directory or save_pretrained folder loaded as `auto_class`. A LoRA run is its
    base with the adapter merged in (and keeps the config it was saved with); a plain checkpoint
    loads with `config` if given, safetensors only and no remote code unless trusted. `options`
    go to from_pretrained (dtype, QLoRA's quantization)."""
    if is_adapter_dir(folder):
        return load_merged(folder, auto_class, **options)
    if config is not None:
        options["config"] = config
    safe = checkpoint_options(folder, trust_remote_code=trust_remote_code)
    return auto_class.from_pretrained(folder, **safe, **options)


def load_with_head(
    path: str,
    auto_class,
    *,
    trust_remote_code: bool = False,
    load_options: dict | None = None,
    **config_changes,
):
    """A checkpoint loaded with a task head (`AutoModelForQuestionAnswering`, ...); the head is
    new when the checkpoint was saved without one. `config_changes` set label names etc.;
    `load_options` go to from_pretrained (QLoRA's 4-bit quantization)."""
    folder = require_model_dir(path, "model.path")
    try:
        config = AutoConfig.from_pretrained(
            folder, trust_remote_code=trust_remote_code, **config_changes
        )
        return load_pretrained(
            folder,
            auto_class,
            config=config,
            trust_remote_code=trust_remote_code,
            **(load_options or {}),
        )
    except (OSError, ValueError, KeyError) as e:
        head = auto_class.__name__.removeprefix("AutoModelFor")
        raise UserError(f"cannot load {path} with a {head} head: {e}") from e


def check_model_fits(config: PretrainedConfig, tokens: int, seq_len: int) -> None:
    """The model must hold every token id and every position that training will use."""
    if config.vocab_size < tokens:
        raise UserError(
            f"the tokenizer has {tokens:,} tokens but the model's vocabulary only "
            f"{config.vocab_size:,}",
            "use the tokenizer saved with the model, or leave model.vocab_size unset",
        )
    positions = model_positions(config)
    if seq_len > positions:
        raise UserError(
            f"data.seq_len ({seq_len}) is longer than the model's positions ({positions})",
            "lower data.seq_len, or raise model.max_positions for a new model",
        )


def parameter_count(config: PretrainedConfig, objective: Objective, nsp: bool) -> int:
    """Parameters of the model a config describes, counted without allocating its weights."""
    with torch.device("meta"):
        model = build_model(config, objective, nsp)
    return sum(p.numel() for p in model.parameters())


def flops_per_token(config: PretrainedConfig, parameters: int, seq_len: int) -> int:
    """Training FLOPs per token: 6N for the weights plus 12·L·H·T for attention (PaLM, app. B)."""
    layers = config.num_hidden_layers
    hidden = config.hidden_size
    return 6 * parameters + 12 * layers * hidden * seq_len


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def language_modeling_of(config: PretrainedConfig) -> LanguageModeling:
    """Causal LM, masked LM or encoder-decoder, from the architecture a checkpoint was saved as."""
    if config.is_encoder_decoder:
        return "seq2seq"
    for architecture in config.architectures or []:
        if architecture.endswith(("ForCausalLM", "LMHeadModel")):
            return "clm"
        if architecture.endswith(("ForMaskedLM", "ForPreTraining")):
            return "mlm"
    if config.model_type in FAMILY_OBJECTIVE:
        return FAMILY_OBJECTIVE[config.model_type]
    raise UserError(
        f"the model ({config.model_type}, {config.architectures}) is neither a causal nor a "
        "masked LM"
    )


def is_vision_language(folder: Path) -> bool:
    """A model that reads images as well as text (LLaVA, Qwen2-VL, PaliGemma, ...): its
    config nests a vision tower's config."""
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the model config in {folder}: {e}") from e
    return getattr(config, "vision_config", None) is not None


def load_vision_language(path: str | Path, precision: str = "auto"):
    """(model, processor) of a vision-language checkpoint: the processor prepares images
    and text (the image placeholder tokens included) as the model was trained to read them."""
    # imported here: the processor classes cost every other command ~2 s of start-up
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = require_model_dir(path, "--model")
    precision = resolve_precision(precision, "--precision")
    try:
        processor = AutoProcessor.from_pretrained(folder)
        model = load_pretrained(folder, AutoModelForImageTextToText, dtype=DTYPES[precision])
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"cannot load {folder} as a vision-language model with its processor: {e}",
            "it needs processor_config.json (or preprocessor_config.json) beside the weights",
        ) from e
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), processor


def load_for_inference(path: str | Path, precision: str = "auto"):
    """(model, tokenizer, language modeling: clm/mlm/seq2seq) of a run directory or
    save_pretrained folder, for scoring and generation."""
    folder = require_model_dir(path, "--model")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the model config in {folder}: {e}") from e
    modeling = language_modeling_of(config)
    precision = resolve_precision(precision, "--precision")
    cls = {"clm": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM}.get(
        modeling, AutoModelForSeq2SeqLM
    )
    try:
        model = load_pretrained(folder, cls, dtype=DTYPES[precision])
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the model in {folder}: {e}") from e
    tokenizer = load_tokenizer(folder)
    check_model_fits(model.config, len(tokenizer), 1)
    use_fused_activations(model)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), tokenizer, modeling

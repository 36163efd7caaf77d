import pytest

from llmkit.errors import UserError
from llmkit.models import (
    build_model,
    build_model_config,
    check_model_fits,
    flops_per_token,
    model_positions,
    padded_vocab_size,
    parameter_count,
)
from llmkit.recipe import ModelConfig, load_recipe

NO_SPECIALS: dict = {}


@pytest.mark.parametrize(
    ("family", "objective", "model_type"),
    [
        ("gpt2", "clm", "gpt2"),
        ("llama", "clm", "llama"),
        ("nanochat", "clm", "nanochat"),
        ("bert", "mlm", "bert"),
        ("roberta", "mlm", "roberta"),
        ("modernbert", "mlm", "modernbert"),
    ],
)
def test_every_family_builds_from_the_recipe(family, objective, model_type):
    config = build_model_config(
        ModelConfig(family=family, layers=2, hidden=64, heads=4, dropout=0.0),
        tokens=1000,
        seq_len=96,
        special_ids={"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1},
    )
    assert config.model_type == model_type
    assert config.vocab_size == 1024  # 1000 padded to a multiple of 64
    assert (
        model_positions(config) == 96 and config.num_hidden_layers == 2 and config.hidden_size == 64
    )
    model = build_model(config, objective, nsp=False)
    assert sum(p.numel() for p in model.parameters()) == parameter_count(config, objective, False)


def test_gpt2_small_recipe_has_gpt2s_124m_parameters():
    recipe = load_recipe("gpt2-small")
    config = build_model_config(recipe.model, tokens=50257, seq_len=1024, special_ids=NO_SPECIALS)
    assert config.vocab_size == 50304
    parameters = parameter_count(config, "clm", False)
    assert 124_000_000 < parameters < 125_000_000
    # 6N + 12·L·H·T with L=12, H=768, T=1024.
    assert flops_per_token(config, parameters, 1024) == 6 * parameters + 12 * 12 * 768 * 1024


def test_bert_base_recipe_is_bert_base_sized():
    recipe = load_recipe("bert-base")
    config = build_model_config(recipe.model, tokens=30522, seq_len=512, special_ids=NO_SPECIALS)
    assert 108_000_000 < parameter_count(config, "mlm", False) < 111_000_000


def test_llama_defaults_to_a_swiglu_width_and_grouped_query_attention():
    config = build_model_config(
        ModelConfig(family="llama", hidden=96, heads=6, kv_heads=2),
        tokens=500,
        seq_len=64,
        special_ids=NO_SPECIALS,
    )
    assert config.intermediate_size == 256 and config.num_key_value_heads == 2


def test_vocab_padding():
    assert [padded_vocab_size(n, 64) for n in (1, 64, 65, 50257)] == [64, 64, 128, 50304]


def test_shape_errors_are_user_errors():
    with pytest.raises(UserError, match="divisible by model.heads"):
        build_model_config(
            ModelConfig(family="gpt2", hidden=100, heads=3), tokens=100, seq_len=32, special_ids={}
        )
    with pytest.raises(UserError, match="kv_heads"):
        build_model_config(
            ModelConfig(family="bert", kv_heads=1), tokens=100, seq_len=32, special_ids={}
        )


def test_the_model_must_fit_the_tokenizer_and_the_sequence():
    config = build_model_config(
        ModelConfig(family="gpt2", max_positions=64, vocab_size=128),
        tokens=100,
        seq_len=64,
        special_ids={},
    )
    check_model_fits(config, 128, 64)
    with pytest.raises(
        UserError, match="tokenizer has 129 tokens but the model's vocabulary only 128"
    ):
        check_model_fits(config, 129, 64)
    with pytest.raises(
        UserError, match=r"data.seq_len \(65\) is longer than the model's positions \(64\)"
    ):
        check_model_fits(config, 128, 65)

"""Property-based tests: any override or recipe text ends in a valid recipe or a UserError."""

import string

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.errors import UserError
from llmkit.recipe import Recipe, apply_override, load_recipe, validate_recipe

keys = st.lists(
    st.text(string.ascii_letters + "_", min_size=1, max_size=12), min_size=1, max_size=4
)
known_keys = st.sampled_from(
    [
        "data.seq_len",
        "data.train",
        "data.clean.dedup",
        "data.clean.min_chars",
        "tokenizer.vocab_size",
        "tokenizer.type",
        "model.layers",
        "model.dropout",
        "train.lr",
        "train.max_steps",
        "train.report_to",
        "objective.mlm_probability",
        "task.name",
        "seed",
        "name",
    ]
)
values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def outcome(overrides):
    try:
        return load_recipe("tokenizer-byte-bpe", overrides)
    except UserError as error:
        assert str(error).strip()
        return error


@settings(max_examples=300, deadline=None)
@given(keys, st.text(max_size=30))
def test_any_override_gives_a_recipe_or_a_user_error(path, raw):
    result = outcome([".".join(path) + "=" + raw])
    assert isinstance(result, (Recipe, UserError))


@settings(max_examples=300, deadline=None)
@given(known_keys, values)
def test_known_keys_with_any_value(key, value):
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    result = outcome([f"{key}={text}"])
    assert isinstance(result, (Recipe, UserError))
    if isinstance(result, Recipe):  # a valid recipe survives its own YAML
        assert Recipe.model_validate(yaml.safe_load(result.to_yaml())) == result


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_assignment_text(text):
    tree: dict = {}
    try:
        apply_override(tree, text)
    except UserError:
        return
    assert isinstance(tree, dict) and tree


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans()),
        lambda children: st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=12,
    )
)
def test_any_yaml_tree(tree):
    try:
        result = validate_recipe(
            tree if isinstance(tree, dict) else {"name": tree}, source="generated"
        )
    except UserError as error:
        assert "recipe" in str(error)
    else:
        assert isinstance(result, Recipe)

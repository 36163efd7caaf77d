from pathlib import Path

import pytest
import yaml

from llmkit.errors import UserError
from llmkit.recipe import (
    Recipe,
    apply_override,
    load_recipe,
    shipped_recipe_names,
    validate_recipe,
)


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_recipe_found_by_name():
    assert {"tokenizer-byte-bpe", "tokenizer-wordpiece"} <= set(shipped_recipe_names())
    recipe = load_recipe("tokenizer-wordpiece")
    assert recipe.tokenizer.type == "wordpiece"
    assert recipe.resolved_output_dir == Path("runs/tokenizer-wordpiece")


def test_every_shipped_recipe_starts_with_the_command_that_runs_it():
    from llmkit.recipe import shipped_recipes_dir

    for path in shipped_recipes_dir().glob("*.yaml"):
        head = path.read_text().splitlines()[:4]
        assert any("llmkit " in line and path.stem in line for line in head), path


def test_name_defaults_to_the_file_stem(tmp_path):
    recipe = load_recipe(str(write(tmp_path, "tokenizer: {vocab_size: 500}\n", "my-tok.yaml")))
    assert recipe.name == "my-tok"
    assert recipe.tokenizer.vocab_size == 500


def test_overrides_are_parsed_as_yaml(tmp_path):
    recipe = load_recipe(
        str(write(tmp_path, "data: {train: builtin}\n")),
        ["data.seq_len=256", "data.clean.dedup=true", "data.clean.normalize=NFKC", "seed=7"],
    )
    assert recipe.data.seq_len == 256 and recipe.data.clean.dedup is True
    assert recipe.data.clean.normalize == "NFKC" and recipe.seed == 7


def test_override_creates_missing_sections():
    tree: dict = {}
    apply_override(tree, "data.clean.max_chars=1000")
    assert tree == {"data": {"clean": {"max_chars": 1000}}}


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe("tokenizer-byte-bpe", ["tokenizer.vocab_size=1234"])
    saved = write(tmp_path, recipe.to_yaml(), "recipe.yaml")
    assert load_recipe(str(saved)) == recipe
    assert Recipe.model_validate(yaml.safe_load(recipe.to_yaml())) == recipe


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.trian=x", "unknown recipe key 'data.trian' (did you mean 'data.train'?)"),
        ("tokenizer.vocab_sise=10", "did you mean 'tokenizer.vocab_size'"),
        ("tokeniser.type=bpe", "did you mean 'tokenizer'"),
        ("tokenizer.vocab_size=abc", "recipe key 'tokenizer.vocab_size'"),
        ("tokenizer.vocab_size=10", "greater than or equal to 64"),
        ("data.seq_len=-5", "recipe key 'data.seq_len'"),
        ("tokenizer.type=sentencepiece", "'byte-bpe', 'bpe', 'wordpiece' or 'unigram'"),
        ("data.train.path=x", "'data.train' is a value, not a section"),
        ("novalue", "not of the form key=value"),
        ("data.train=[unclosed", "not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(UserError) as caught:
        load_recipe("tokenizer-byte-bpe", [override])
    assert expected in str(caught.value)


def test_missing_recipe_suggests_a_shipped_one():
    with pytest.raises(UserError, match="did you mean 'tokenizer-wordpiece'"):
        load_recipe("tokenizer-wordpeice")
    with pytest.raises(UserError, match="does not exist"):
        load_recipe("no/such/recipe.yaml")
    with pytest.raises(UserError, match="nor a shipped recipe.*did you mean 'bert-small'"):
        load_recipe("bert-smal.yaml")


def test_a_bare_yaml_name_is_the_shipped_recipe_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_recipe("bert-small.yaml").name == load_recipe("bert-small").name == "bert-small"
    (tmp_path / "bert-small.yaml").write_text("name: mine\n")  # a file here wins
    assert load_recipe("bert-small.yaml").name == "mine"
    with pytest.raises(UserError, match="does not exist"):  # a folder part: always a path
        load_recipe("./recipes/bert-small.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "must be a mapping"),
        ("data: [unclosed\n", "not valid YAML"),
        ("data: 3\n", "data"),
    ],
)
def test_bad_recipe_files(tmp_path, text, expected):
    with pytest.raises(UserError, match=expected):
        load_recipe(str(write(tmp_path, text)))


def test_yaml_is_read_safely(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(str(path))


def test_the_readme_lists_every_recipe_key_with_its_default():
    """docs/recipes.md's annotated recipe is the user's reference: it must match the schema,
    and the task keys stand under the kinds that read them."""
    import re

    from llmkit.recipe import Recipe
    from llmkit.tasks import KINDS, owners_of
    from llmkit.tasks.kind import TaskKeys

    section = (Path(__file__).parents[1] / "docs" / "recipes.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    listed = yaml.safe_load(block)
    defaults = Recipe().model_dump(mode="json")
    listed["name"], defaults["name"] = None, None  # the example names itself
    every_task_key = {}
    for kind in KINDS.values():
        for keys in (kind.keys, *kind.task_keys.values()):
            every_task_key.update(keys().model_dump(mode="json"))
    assert set(defaults.pop("task")) == set(TaskKeys.model_fields)
    assert listed.pop("task") == every_task_key
    assert listed == defaults
    # model.lora is null by default; its keys' defaults are listed in the comment beside it.
    from llmkit.recipe import LoraConfig

    lines = block[block.index("  lora: null") :].splitlines()
    comment = " ".join(
        [lines[0], *(line for line in lines[1:] if line.strip().startswith("#"))][:3]
    )
    for key, value in LoraConfig().model_dump(mode="json").items():
        value = int(value) if isinstance(value, float) and value.is_integer() else value
        assert f"{key}: {value}" in comment, (
            f"docs/recipes.md's model.lora comment lacks {key}: {value}"
        )
    # Under "# glue/*, qa/*:" headings: exactly the keys the registry says those kinds read.
    task_lines = block[block.index("\ntask:") :].split("\ntrain:")[0].splitlines()[2:]
    owners = set()  # before the first heading: keys every kind reads
    for line in task_lines:
        heading = re.fullmatch(r"\s*# (.+):", line)
        if heading:
            owners = {owner.strip() for owner in heading.group(1).split(",")}
            continue
        key = line.split(":")[0].strip()
        expected = set() if key in TaskKeys.model_fields else set(owners_of(key))
        assert owners == expected, f"docs/recipes.md lists task.{key} under {owners or 'all kinds'}"


def test_every_task_kind_has_a_shipped_recipe_and_a_row_in_finetunes_page():
    from llmkit.commands.recipes import recipes_by_task
    from llmkit.tasks import KINDS

    runs = recipes_by_task()

    page = (Path(__file__).parents[1] / "docs" / "commands" / "finetune.md").read_text()
    table = page[page.index("| `task.name` |") :].split("\n\n")[0]
    for kind in KINDS.values():
        rows = [row for row in table.splitlines() if row.startswith(f"| `{kind.name}/")]
        assert rows, f"docs/commands/finetune.md's table has no row for {kind.name}/*"
        assert all(kind.head.removeprefix("AutoModelFor") in row for row in rows)
        recipes = [name for task in kind.names for name in runs.get(task, [])]
        assert recipes, f"no shipped recipe fine-tunes a {kind.name}/* task"
        for name in recipes:
            assert load_recipe(name).task.name in kind.names
            assert any(f"`{name}`" in row for row in rows), f"{name} is not in the table"


def test_a_task_key_of_another_kind_is_an_error_naming_its_kind():
    with pytest.raises(
        UserError, match="'task.doc_stride' belongs to qa/\\* tasks, not to glue/sst2"
    ):
        load_recipe("glue-sst2", ["task.doc_stride=64"])
    with pytest.raises(UserError, match="'task.source_lang' belongs to seq2seq/translation"):
        load_recipe("glue-sst2", ["task.name=seq2seq/summarization", "task.source_lang=fr"])
    # At its default (as recipes saved before per-kind keys list it) it is dropped, not an error.
    assert (
        "doc_stride"
        not in type(load_recipe("glue-sst2", ["task.doc_stride=128"]).task).model_fields
    )
    qa = load_recipe("glue-sst2", ["task.name=qa/squad", "task.doc_stride=64"])
    assert qa.task.doc_stride == 64
    # A saved recipe lists every key with its default: it loads back as it was written.
    for name in shipped_recipe_names():
        recipe = load_recipe(name)
        assert validate_recipe(recipe.model_dump(mode="json"), source=name) == recipe


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_no_recipe_number_is_infinite_or_nan(value):
    with pytest.raises(UserError, match="train.lr"):
        load_recipe("gpt2-tiny", [f"train.lr={value}"])


def test_llmkit_max_steps_caps_a_run_and_says_so_in_its_recipe(monkeypatch):
    monkeypatch.setenv("LLMKIT_MAX_STEPS", "5")
    assert load_recipe("gpt2-tiny").train.max_steps == 5  # the recipe asks for 800
    assert load_recipe("gpt2-tiny", ["train.max_steps=3"]).train.max_steps == 3  # fewer: kept
    assert load_recipe("glue-sst2").train.max_steps == 5  # epochs, capped by steps
    monkeypatch.setenv("LLMKIT_MAX_STEPS", "five")
    with pytest.raises(UserError, match="LLMKIT_MAX_STEPS=five is not a number of steps"):
        load_recipe("gpt2-tiny")

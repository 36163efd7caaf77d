"""The nanochat (causal) and modernbert (masked) families, built from the recipe from
transformers' own NanoChatConfig and ModernBertConfig, through every command that uses them."""

import pytest
import torch
from helpers import FIXTURES, TINY_MODEL, json_line, set_args
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, pipeline
from typer.testing import CliRunner

from llmkit.cli import app

runner = CliRunner()
FAST = [
    *TINY_MODEL,
    "model.heads=4",
    "train.batch_size=16",
    "train.max_steps=60",
    "train.lr=2e-3",
    "train.log_every=10",
]


def run(*args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json_line(result.stdout)


@pytest.fixture(scope="module")
def nanochat_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nanochat") / "run"
    # WikiText and 128 positions: room for the SST-2 prompts fine-tuned on below
    wikitext = f"data.train={FIXTURES / 'wikitext-2-valid.txt'}"
    args = set_args([*FAST, "model.family=nanochat", wikitext, "data.seq_len=128"])
    return out, run("pretrain-clm", "--recipe", "gpt2-tiny", "-o", str(out), *args)


@pytest.fixture(scope="module")
def modernbert_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("modernbert") / "run"
    args = set_args([*FAST, "model.family=modernbert"])
    return out, run("pretrain-mlm", "--recipe", "bert-tiny", "-o", str(out), *args)


def test_nanochat_learns_loads_and_generates_as_transformers_does(nanochat_run):
    out, summary = nanochat_run
    assert summary["model"] == "nanochat"
    assert summary["eval_loss"] < summary["initial_eval_loss"] - 1.0
    model = AutoModelForCausalLM.from_pretrained(out)
    config = model.config
    assert config.model_type == "nanochat" and not config.tie_word_embeddings
    assert config.final_logit_softcapping == 15.0 and config.hidden_act == "relu2"
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = "The game"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :]
    generated = run("generate", "--model", str(out), "--prompt", prompt, "--max-new-tokens", "12")
    (completion,) = generated["results"]
    assert completion["completion"] == tokenizer.decode(expected, skip_special_tokens=True)
    text = pipeline("text-generation", model=model, tokenizer=tokenizer)(prompt, max_new_tokens=4)
    assert text[0]["generated_text"].startswith(prompt)
    scored = run("eval-ppl", "--model", str(out), "--data", "builtin", "--max-length", "64")
    assert 1 < scored["token_perplexity"] < 1000


def test_nanochat_fine_tunes_with_lora(nanochat_run, tmp_path):
    out, _ = nanochat_run
    overrides = [f"model.path={out}", "model.lora.r=4", "train.max_steps=4"]
    summary = run(
        "finetune", "--recipe", "sft-completion", "-o", str(tmp_path / "sft"), *set_args(overrides)
    )
    assert summary["lora_r"] == 4 and 0 < summary["trainable_parameters"]


def test_modernbert_learns_fills_masks_and_fine_tunes_on_glue(modernbert_run, tmp_path):
    out, summary = modernbert_run
    assert summary["eval_loss"] < summary["initial_eval_loss"] - 0.7
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.config.model_type == "modernbert" and model.config.tie_word_embeddings
    tokenizer = AutoTokenizer.from_pretrained(out)
    fills = pipeline("fill-mask", model=model, tokenizer=tokenizer)(
        f"Good {tokenizer.mask_token}, my lord."
    )
    assert len(fills) == 5 and all(0 <= f["score"] <= 1 for f in fills)
    for lora in ([], ["model.lora.r=4"]):
        overrides = [
            f"model.path={out}",
            f"task.data_dir={FIXTURES / 'glue' / 'SST-2'}",
            "train.max_steps=10",
            *lora,
        ]
        tuned = run("finetune", "--recipe", "glue-sst2", "-o", str(tmp_path / f"sst2{len(lora)}"),
                    *set_args(overrides))  # fmt: skip
        assert 0 <= tuned["eval_accuracy"] <= 1


@pytest.mark.parametrize(
    ("command", "recipe", "family", "expected"),
    [
        ("pretrain-mlm", "bert-tiny", "nanochat", "is not a masked"),
        ("pretrain-clm", "gpt2-tiny", "modernbert", "is not a causal"),
    ],
)
def test_a_family_of_the_other_objective_exits_2(tmp_path, command, recipe, family, expected):
    args = [
        command,
        "--recipe",
        recipe,
        "-o",
        str(tmp_path / "run"),
        "--set",
        f"model.family={family}",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and expected in result.output, result.output

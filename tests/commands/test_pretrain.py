import json

import pytest
import torch
from helpers import TINY_MODEL, StopAt, json_line, set_args
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertForPreTraining,
    pipeline,
)
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.commands.pretrain import hold_out, run_pretrain
from llmkit.data.corpus import packed_blocks
from llmkit.recipe import load_recipe

runner = CliRunner()
# Small enough for a few seconds on 2 CPU cores, large enough for the loss to fall clearly.
FAST = [
    *TINY_MODEL,
    "model.layers=2",
    "train.batch_size=16",
    "train.max_steps=60",
    "train.eval_every=30",
    "train.log_every=10",
    "train.lr=2e-3",
]


def sets(*overrides):
    return set_args(overrides)


def pretrain(command, recipe, out, *extra):
    return runner.invoke(app, [command, "--recipe", recipe, "-o", str(out), *extra])


@pytest.fixture(scope="module")
def clm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clm") / "run"
    result = pretrain("pretrain-clm", "gpt2-tiny", out, *sets(*FAST), "--json")
    assert result.exit_code == 0, result.output
    return out, json_line(result.stdout)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlm") / "run"
    result = pretrain("pretrain-mlm", "bert-tiny", out, *sets(*FAST), "--json")
    assert result.exit_code == 0, result.output
    return out, json_line(result.stdout)


def test_clm_loss_falls_on_wikitext(clm_run):
    out, summary = clm_run
    assert summary["steps"] == 60
    assert summary["eval_loss"] < summary["initial_eval_loss"] - 1.0
    assert summary["eval_perplexity"] == pytest.approx(
        2.718281828 ** summary["eval_loss"], rel=1e-4
    )
    assert summary["tokens_per_second"] > 0 and summary["train_tokens"] == 60 * 16 * 64


def test_clm_run_dir_has_the_spec_layout_and_loads(clm_run):
    out, summary = clm_run
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "recipe.yaml",
        "metrics.json",
        "trainer_state.json",
        "README.md",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == summary
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt")), "a pickle in the run dir"
    state = json.loads((out / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "eval_loss" in e] == [0, 30, 60, 60]
    assert load_recipe(str(out / "recipe.yaml")).train.max_steps == 60
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size >= len(tokenizer)
    generated = pipeline("text-generation", model=model, tokenizer=tokenizer)(
        "The game", max_new_tokens=8, do_sample=False
    )
    assert (
        generated[0]["generated_text"].startswith("The game")
        and len(generated[0]["generated_text"]) > 8
    )


def test_clm_blocks_are_scored_exactly_as_by_hand(clm_run):
    """The run's eval loss is the mean next-token NLL over the held-out blocks."""
    out, summary = clm_run
    recipe = load_recipe(str(out / "recipe.yaml"))
    tokenizer = AutoTokenizer.from_pretrained(out)
    blocks = packed_blocks(recipe.data, "builtin", tokenizer, "clm", split="train").blocks
    _, held = hold_out(blocks, recipe.data.validation_fraction)
    assert summary["eval_blocks"] == len(held)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor(held["input_ids"], dtype=torch.long)
    with torch.no_grad():
        logits = model(ids).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:])
    assert summary["eval_loss"] == pytest.approx(nll.item(), rel=1e-4)


def test_llama_family_trains_and_loads(tmp_path):
    out = tmp_path / "llama"
    result = pretrain(
        "pretrain-clm", "llama-tiny", out, *sets(*FAST, "train.max_steps=10", "model.heads=4")
    )
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and model.config.num_key_value_heads == 2
    assert model.config.num_attention_heads == 4 and model.config.use_cache


def test_mlm_loss_falls_and_fill_mask_works(mlm_run):
    out, summary = mlm_run
    # Measured over seeds: CLM falls by 1.3 in these 60 steps, MLM (15% of tokens scored) by 0.95.
    assert summary["eval_loss"] < summary["initial_eval_loss"] - 0.7
    assert 0 < summary["eval_accuracy"] < 1
    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    fills = pipeline("fill-mask", model=model, tokenizer=tokenizer)(
        f"The game was {tokenizer.mask_token} in Japan ."
    )
    assert len(fills) == 5 and all(0 <= f["score"] <= 1 for f in fills)


def test_nsp_run_saves_bert_for_pretraining_and_logs_nsp_accuracy(tmp_path):
    out = tmp_path / "nsp"
    result = pretrain(
        "pretrain-mlm",
        "bert-tiny",
        out,
        *sets(*FAST, "train.max_steps=20", "objective.nsp=true"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json_line(result.stdout)
    assert summary["model"] == "bert + NSP" and 0 <= summary["eval_nsp_accuracy"] <= 1
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    assert isinstance(BertForPreTraining.from_pretrained(out), BertForPreTraining)
    state = json.loads((out / "trainer_state.json").read_text())
    assert any("eval_nsp_accuracy" in entry for entry in state["log_history"])


@pytest.mark.parametrize(("command", "recipe"), [("clm", "gpt2-tiny"), ("mlm", "bert-tiny")])
def test_a_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, command, recipe):
    overrides = [
        *FAST,
        "train.max_steps=12",
        "train.save_every=4",
        "train.eval_every=6",
        "model.dropout=0.1",
    ]  # dropout: the RNG state must be restored too
    whole = load_recipe(recipe, overrides)
    run_pretrain(whole, command, output_dir=tmp_path / "whole")
    run_pretrain(whole, command, output_dir=tmp_path / "parts", callbacks=[StopAt(8)])
    assert json.loads((tmp_path / "parts" / "metrics.json").read_text())["steps"] == 8
    resumed = run_pretrain(whole, command, output_dir=tmp_path / "parts", resume="auto")
    assert resumed["steps"] == 12 and resumed["resumed_from"].endswith("checkpoint-8")
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "parts" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_dry_run_prints_parameters_and_flops(tmp_path):
    result = runner.invoke(app, ["pretrain-clm", "--recipe", "gpt2-small", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "124,475,904" in result.stdout and "flops_per_token" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_a_tokenizer_smaller_than_asked_is_said_before_and_after(tmp_path, clm_run, fixtures_dir):
    """A slice of 134 rows has fewer pieces than 5,000 to learn: the dry run shows the sizes
    as the most the run can have, the run warns with both sizes and keeps the asked one in
    its summary; with a tokenizer given, the dry run shows the real sizes."""
    small = [f"data.train={fixtures_dir / 'wikitext-2-raw-test-head.raw'}"]
    small += ["tokenizer.vocab_size=5000", "data.validation_fraction=0"]
    dry = pretrain("pretrain-clm", "gpt2-tiny", tmp_path / "dry", *sets(*small), "--dry-run")
    assert dry.exit_code == 0 and "up to 5,056" in dry.stdout, dry.output  # 5,000 padded to 64s
    out, _ = clm_run
    given = ["--set", f"tokenizer.path={out}", "--dry-run"]
    exact = runner.invoke(app, ["pretrain-clm", "--recipe", "gpt2-tiny", *given])
    assert exact.exit_code == 0 and "up to" not in exact.stdout, exact.output
    overrides = sets(*TINY_MODEL, "model.layers=1", "train.max_steps=2", *small)
    result = pretrain("pretrain-clm", "gpt2-tiny", tmp_path / "run", *overrides, "--json")
    assert result.exit_code == 0, result.output
    summary = json_line(result.stdout)
    learned = len(AutoTokenizer.from_pretrained(tmp_path / "run"))
    assert learned < 5000 and summary["vocab_size_asked"] == 5000
    warning = " ".join(result.stderr.split())
    assert f"learned {learned:,} entries, fewer than the 5,000" in warning


def user_error(command, recipe, out, *overrides):
    result = pretrain(command, recipe, out, *sets(*FAST, *overrides))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    return result.stderr


def test_user_errors(tmp_path, clm_run):
    out = tmp_path / "out"
    assert "tokenizer has 1,000 tokens but the model's vocabulary only 512" in user_error(
        "pretrain-clm", "gpt2-tiny", out, "model.vocab_size=512"
    )
    assert "longer than the model's positions (32)" in user_error(
        "pretrain-clm", "gpt2-tiny", out, "model.max_positions=32"
    )
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("just a few words of text\n")
    assert "too small for one block" in user_error(
        "pretrain-clm", "gpt2-tiny", out, f"data.train={tiny}"
    )
    assert "not a causal language model" in user_error("pretrain-clm", "bert-tiny", out)
    assert "not a masked language model" in user_error("pretrain-mlm", "gpt2-tiny", out)
    assert "divisible by model.heads" in user_error(
        "pretrain-clm", "gpt2-tiny", out, "model.heads=3"
    )
    assert "needs the bert family" in user_error(
        "pretrain-mlm", "bert-tiny", out, "model.family=roberta", "objective.nsp=true"
    )
    assert not out.exists()
    finished, _ = clm_run
    before = (finished / "model.safetensors").read_bytes()
    assert "already holds a finished run" in user_error("pretrain-clm", "gpt2-tiny", finished)
    assert (finished / "model.safetensors").read_bytes() == before


def test_model_path_continues_from_a_finished_run(tmp_path, clm_run):
    finished, first = clm_run
    out = tmp_path / "continued"
    result = pretrain(
        "pretrain-clm",
        "gpt2-tiny",
        out,
        *sets(*FAST, f"model.path={finished}", "model.family=null", "train.max_steps=20"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json_line(result.stdout)
    # It starts where the first run ended, not from scratch.
    assert summary["initial_eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-4)
    assert summary["eval_loss"] < summary["initial_eval_loss"]


def test_model_path_with_a_larger_tokenizer_is_refused(tmp_path, clm_run):
    finished, _ = clm_run
    bigger = tmp_path / "tok"
    assert (
        runner.invoke(
            app,
            [
                "tokenize",
                "--recipe",
                "tokenizer-byte-bpe",
                "-o",
                str(bigger),
                "--set",
                "tokenizer.vocab_size=2000",
            ],
        ).exit_code
        == 0
    )
    message = user_error(
        "pretrain-clm",
        "gpt2-tiny",
        tmp_path / "out",
        f"model.path={finished}",
        f"tokenizer.path={bigger}",
    )
    assert "tokenizer has 2,000 tokens but the model's vocabulary only 1,024" in message


def test_a_given_validation_source_is_used(tmp_path, fixtures_dir):
    wikitext_raw_test = fixtures_dir / "wikitext-2-raw-test-head.raw"  # raw rows, CRLF
    out = tmp_path / "run"
    result = pretrain(
        "pretrain-clm",
        "gpt2-tiny",
        out,
        *sets(*FAST, "train.max_steps=10", f"data.validation={wikitext_raw_test}"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json_line(result.stdout)
    tokenizer = AutoTokenizer.from_pretrained(out)
    rows = [r for r in wikitext_raw_test.read_bytes().decode().split("\r\n") if r.strip()]
    stream = sum(len(tokenizer(r)["input_ids"]) + 1 for r in rows)  # + EOS per document
    assert summary["eval_blocks"] == stream // 64
    # Nothing is held out of the training corpus when validation has its own source.
    recipe = load_recipe(str(out / "recipe.yaml"))
    all_blocks = packed_blocks(recipe.data, "builtin", tokenizer, "clm", split="train").blocks
    assert summary["train_blocks"] == len(all_blocks)


def test_pretraining_reuses_the_blocks_that_tokenize_packed(tmp_path):
    tok = tmp_path / "tok"
    packed = runner.invoke(
        app,
        [
            "tokenize",
            "--recipe",
            "tokenizer-byte-bpe",
            "-o",
            str(tok),
            "--json",
            *sets("tokenizer.vocab_size=1000", "data.seq_len=64", "data.encode=true"),
        ],
    )
    assert packed.exit_code == 0, packed.output
    blocks = json_line(packed.stdout)["blocks"]
    result = pretrain(
        "pretrain-clm",
        "gpt2-tiny",
        tmp_path / "run",
        *sets(*FAST, "train.max_steps=2", f"tokenizer.path={tok}"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json_line(result.stdout)
    assert summary["blocks_reused"] is True
    assert summary["train_blocks"] + summary["eval_blocks"] == blocks


def test_tensorboard_logs_go_into_the_run_dir(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    result = pretrain(
        "pretrain-clm",
        "gpt2-tiny",
        out,
        *sets(*FAST, "train.max_steps=4", "train.log_every=2", "train.report_to=[tensorboard]"),
    )
    assert result.exit_code == 0, result.output
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_a_reporter_that_is_not_installed_is_a_user_error(tmp_path, monkeypatch):
    from llmkit import training

    monkeypatch.setitem(training.REPORTER_PACKAGES, "wandb", ("surely_not_installed_pkg",))
    message = user_error("pretrain-clm", "gpt2-tiny", tmp_path / "out", "train.report_to=[wandb]")
    assert "train.report_to names wandb, which is not installed" in message


def test_bf16_trains_on_a_cpu_and_validation_can_be_off(tmp_path):
    out = tmp_path / "bf16"
    overrides = ("train.max_steps=2", "train.precision=bf16", "data.validation_fraction=0")
    result = pretrain("pretrain-clm", "gpt2-tiny", out, *sets(*FAST, *overrides))
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["eval_blocks"] == 0 and "eval_loss" not in metrics

"""train.optimizer muon (Muon for hidden weight matrices, AdamW for the rest, one optimizer)
and train.schedule wsd (warmup, constant, linear decay to 0)."""

import json
import re

import pytest
import torch
import transformers
from helpers import TINY_MODEL, StopAt, set_args
from safetensors.torch import load_file
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.commands.pretrain import run_pretrain
from llmkit.models import build_model, build_model_config
from llmkit.optimizers import MuonSplit, muon_takes
from llmkit.recipe import ModelConfig, TrainConfig, load_recipe

SPECIALS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
# What AdamW keeps of each model, by name (the rest of the 2-D weights go to Muon).
ADAMW_MATRICES = {
    "gpt2": r"transformer\.(wte|wpe)\.weight",  # the LM head is tied to wte
    "llama": r"model\.embed_tokens\.weight|lm_head\.weight",
    "bert+nsp": r"bert\.embeddings\.\w+_embeddings\.weight|cls\.seq_relationship\.weight",
    "nanochat": r"model\.embed_tokens\.weight|lm_head\.weight",  # untied
    "modernbert": r"model\.embeddings\.tok_embeddings\.weight",  # the decoder is tied to it
}


def config_of(family: str):
    shape = ModelConfig(family=family, layers=2, hidden=64, heads=4, dropout=0.0)
    return build_model_config(shape, tokens=1000, seq_len=64, special_ids=SPECIALS)


def model_of(family: str, objective: str, nsp: bool = False):
    return build_model(config_of(family), objective, nsp=nsp)


def with_head(family: str, auto_class: str):
    config = config_of(family)
    config.num_labels = 2
    return getattr(transformers, auto_class).from_config(config)


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("gpt2", lambda: model_of("gpt2", "clm")),
        ("llama", lambda: model_of("llama", "clm")),
        ("bert+nsp", lambda: model_of("bert", "mlm", nsp=True)),
        ("nanochat", lambda: model_of("nanochat", "clm")),
        ("modernbert", lambda: model_of("modernbert", "mlm")),
    ],
)
def test_muon_takes_the_hidden_weight_matrices_and_adamw_the_rest(name, model):
    model = model()
    takes = muon_takes(model)
    params = dict(model.named_parameters())
    assert takes.keys() == params.keys()  # every trainable parameter is decided
    for parameter_name, by_muon in takes.items():
        matrix = params[parameter_name].ndim == 2
        kept_by_adamw = re.fullmatch(ADAMW_MATRICES[name], parameter_name) is not None
        assert by_muon == (matrix and not kept_by_adamw), parameter_name
    assert sum(takes.values()) >= 2 * 4  # at least the attention and MLP weights of 2 layers


@pytest.mark.parametrize(
    ("family", "head", "output"),
    [
        ("gpt2", "AutoModelForSequenceClassification", "score.weight"),
        ("bert", "AutoModelForSequenceClassification", "classifier.weight"),
        ("bert", "AutoModelForQuestionAnswering", "qa_outputs.weight"),
        ("bert", "AutoModelForTokenClassification", "classifier.weight"),
        ("modernbert", "AutoModelForSequenceClassification", "classifier.weight"),
    ],
)
def test_a_task_head_stays_with_adamw(family, head, output):
    takes = muon_takes(with_head(family, head))
    assert takes[output] is False
    assert any(takes.values())


def test_one_optimizer_holds_each_parameter_once():
    model = model_of("bert", "mlm", nsp=True)
    optimizer = MuonSplit()(model, train=TrainConfig(optimizer="muon", lr=1e-3, weight_decay=0.1))
    held = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(held) == len({id(p) for p in held}) == len(list(model.parameters()))
    muon, tables, vectors = optimizer.param_groups
    assert all(p.ndim == 2 for p in muon["params"]) and muon["weight_decay"] == 0.1
    assert tables["weight_decay"] == 0.1 and vectors["weight_decay"] == 0.0
    assert all(p.ndim < 2 for p in vectors["params"])
    # A scheduler's rate reaches both optimizers; the state dict round-trips.
    for group in optimizer.param_groups:
        group["lr"] = 5e-4
    assert optimizer.muon.param_groups[0]["lr"] == optimizer.adamw.param_groups[0]["lr"] == 5e-4
    model(**{"input_ids": torch.randint(0, 1000, (2, 16))}).prediction_logits.sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    again = MuonSplit()(model, train=TrainConfig(optimizer="muon"))
    again.load_state_dict(state)
    assert again.param_groups[0] is again.muon.param_groups[0]
    assert again.param_groups[0]["lr"] == 5e-4


FAST = [*TINY_MODEL, "data.validation_fraction=0", "train.log_every=1"]


def test_wsd_learning_rates_equal_a_hand_computation(tmp_path):
    # 20 steps: 4 of warmup, then 12 constant, then a linear decay over the last 4.
    recipe = load_recipe(
        "gpt2-tiny",
        [*FAST, "train.max_steps=20", "train.warmup=4", "train.schedule=wsd", "train.lr=1e-3",
         "train.decay_fraction=0.2"],
    )  # fmt: skip
    run_pretrain(recipe, "clm", output_dir=tmp_path / "run")
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    logged = {e["step"]: e["learning_rate"] for e in history if "learning_rate" in e}

    def by_hand(step: int) -> float:  # the rate step `step` trains with (steps count from 0)
        if step < 4:
            return 1e-3 * step / 4
        if step < 16:
            return 1e-3
        return 1e-3 * (1 - (step - 16) / 4)

    # Trainer logs, after step s (1-based), the rate that step s was trained with.
    assert logged == pytest.approx({s: by_hand(s - 1) for s in range(1, 21)}, abs=1e-12)


def test_a_muon_run_learns_and_resumes_to_the_uninterrupted_weights(tmp_path):
    overrides = [
        *FAST,
        "train.max_steps=12",
        "train.save_every=4",
        "train.optimizer=muon",
        "train.schedule=wsd",
        "train.lr=3e-3",
    ]
    whole = load_recipe("gpt2-tiny", overrides)
    summary = run_pretrain(whole, "clm", output_dir=tmp_path / "whole")
    run_pretrain(whole, "clm", output_dir=tmp_path / "parts", callbacks=[StopAt(8)])
    resumed = run_pretrain(whole, "clm", output_dir=tmp_path / "parts", resume="auto")
    assert resumed["resumed_from"].endswith("checkpoint-8")
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "parts" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0  # bit-identical
    history = json.loads((tmp_path / "whole" / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert losses[-1] < losses[0] - 0.5 and summary["steps"] == 12
    # Muon's momentum buffers are in the checkpoint, beside AdamW's moments.
    state = torch.load(tmp_path / "parts" / "checkpoint-8" / "optimizer.pt", weights_only=True)
    assert state.keys() == {"muon", "adamw"}
    assert all("momentum_buffer" in s for s in state["muon"]["state"].values())


@pytest.mark.parametrize(
    ("overrides", "environment", "expected"),
    [
        (["train.decay_fraction=0"], {}, "decay_fraction"),
        (["train.decay_fraction=1.5"], {}, "decay_fraction"),
        (["train.optimizer=lion"], {}, "optimizer"),
        (["train.muon.momentum=1"], {}, "momentum"),
        (["train.optimizer=muon"], {"ACCELERATE_USE_FSDP": "true"}, "FSDP shards them"),
        (["train.optimizer=muon"], {"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed shards"),
        (["train.schedule=wsd", "train.warmup=0.9"], {}, "do not fit"),  # the recipe's check
        # a warmup in steps: checked once the run knows its 4 steps
        (["train.schedule=wsd", "train.warmup=3", "train.decay_fraction=0.5"], {}, "do not fit"),
    ],
)
def test_bad_optimizer_settings_exit_2_with_one_message(
    tmp_path, monkeypatch, overrides, environment, expected
):
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    args = ["pretrain-clm", "--recipe", "gpt2-tiny", "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*args, *set_args([*FAST, "train.max_steps=4", *overrides])])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output

"""Supervised fine-tuning end to end: a tiny GPT taught SST-2 as completions answers with a
label word and stops; chats train with ChatML and generate with --chat; the dry-run audit;
bad inputs."""

import collections
import json

import pytest
from helpers import FIXTURES, set_args
from transformers import AutoTokenizer, GenerationConfig

SFT = FIXTURES / "sft"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (SFT / name).read_text().splitlines()]


@pytest.mark.slow
def test_sst2_as_completions_beats_the_majority_class_and_stops(trained_clm_128, tmp_path, cli):
    out = tmp_path / "sft"
    args = ["--recipe", "sft-completion", "-o", str(out), "--json"]
    overrides = [f"model.path={trained_clm_128}", "train.epochs=5", "train.batch_size=32"]
    result, summary = cli("finetune", *args, *set_args(overrides))
    assert result.exit_code == 0, result.output
    labels = collections.Counter(row["completion"] for row in rows("sst2-dev.jsonl"))
    majority = 100 * max(labels.values()) / sum(labels.values())
    assert summary["eval_answered"] == sum(labels.values()) == 123
    assert summary["eval_exact_match"] >= majority + 8, (summary["eval_exact_match"], majority)
    predictions = [json.loads(line) for line in (out / "dev_predictions.jsonl").open()]
    assert {p["prediction"] for p in predictions} == {"positive", "negative"}
    # `generate` answers a dev prompt with one label word and stops there (EOS).
    prompt = rows("sst2-dev.jsonl")[0]["prompt"]
    result, generated = cli("generate", "--model", str(out), "--prompt", prompt, "--json")
    assert result.exit_code == 0, result.output
    (completion,) = generated["results"]
    assert completion["completion"].strip() in {"positive", "negative"}
    label_tokens = len(AutoTokenizer.from_pretrained(out)(" positive")["input_ids"])
    assert completion["completion_tokens"] <= label_tokens + 1


def test_a_chat_run_adds_chatml_tokens_and_stops_at_the_end_of_turn(chat_run, cli):
    out, summary = chat_run
    tokenizer = AutoTokenizer.from_pretrained(out)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert {"<|im_start|>", "<|im_end|>"} <= set(tokenizer.get_vocab())
    assert "<|im_start|>" in tokenizer.chat_template
    stops = GenerationConfig.from_pretrained(out).eos_token_id
    assert end in (stops if isinstance(stops, list) else [stops])
    assert summary["eval_answered"] == 4 and (out / "dev_predictions.jsonl").is_file()
    result, generated = cli(
        "generate", "--model", str(out), "--chat", "--system", "Be brief.", "--prompt", "Hi?",
        "--max-new-tokens", "12", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (completion,) = generated["results"]
    assert completion["prompt"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert completion["prompt"].endswith("<|im_start|>assistant\n")


def test_the_dry_run_shows_the_trained_tokens_and_their_share(trained_clm_128, cli):
    args = ["--recipe", "sft-chat", "--dry-run", "--set", f"model.path={trained_clm_128}"]
    result, _ = cli("finetune", *args)
    assert result.exit_code == 0, result.output
    assert "⟦" in result.stderr and "<|im_end|>\n⟧" in result.stderr
    assert "trained_share" in result.stdout and "<|im_start|>, <|im_end|>" in result.stdout


@pytest.mark.parametrize(
    ("recipe", "overrides", "expected"),
    [
        ("sft-completion", ["task.train_file={tmp}/qa.jsonl"], "no prompt and completion columns"),
        (
            "sft-completion",
            ["task.train_file={tmp}/empty.jsonl"],
            "example 2 has an empty completion",
        ),
        ("sft-chat", ["task.train_file={tmp}/roles.jsonl"], "example 1: unknown role 'bot'"),
        ("sft-chat", ["task.chat_template={tmp}/broken.jinja"], "does not parse"),
        ("sft-chat", ["model.path={mlm}"], "fine-tunes causal LMs"),
        ("sft-completion", ["task.train_file={tmp}/chat.jsonl"], "task.name=sft/chat"),
    ],
)
def test_bad_sft_inputs_end_in_one_message(
    trained_clm_128, trained_mlm, tmp_path, cli, recipe, overrides, expected
):
    (tmp_path / "qa.jsonl").write_text('{"question": "a", "answer": "b"}\n')
    (tmp_path / "empty.jsonl").write_text(
        '{"prompt": "a", "completion": " b"}\n{"prompt": "a", "completion": ""}\n'
    )
    (tmp_path / "roles.jsonl").write_text(
        json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n"
    )
    (tmp_path / "chat.jsonl").write_text((SFT / "squad-chat-dev.jsonl").read_text())
    (tmp_path / "broken.jinja").write_text("{% for m in messages %}{{ m['content'] }")
    overrides = [o.format(tmp=tmp_path, mlm=trained_mlm) for o in overrides]
    args = ["--recipe", recipe, "-o", str(tmp_path / "run")]
    args += set_args([f"model.path={trained_clm_128}", *overrides])
    result, _ = cli("finetune", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()

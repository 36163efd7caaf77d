import json

import pytest
import torch
from helpers import json_line
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.commands.generate import run_generate
from llmkit.generation import DecodingOptions

runner = CliRunner()
PROMPTS = ["The game", "In 1998 , the band released a", "It"]


def completions(model_dir, prompts, **options):
    seed = options.pop("seed", None)
    batch_size = options.pop("batch_size", 8)
    summary = run_generate(
        str(model_dir),
        prompts,
        DecodingOptions(**options),
        seed=seed,
        batch_size=batch_size,
        show=False,
    )
    return [r["completion"] for r in summary["results"]]


def test_greedy_equals_model_generate(trained_clm):
    model = AutoModelForCausalLM.from_pretrained(trained_clm).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_clm)
    for prompt, got in zip(
        PROMPTS, completions(trained_clm, PROMPTS, max_new_tokens=12), strict=True
    ):
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(
                **ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        expected = tokenizer.decode(
            output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
        )
        assert got == expected


def test_batched_prompts_get_their_one_at_a_time_completions(trained_clm):
    batched = completions(trained_clm, PROMPTS, max_new_tokens=12, batch_size=3)
    alone = [completions(trained_clm, [p], max_new_tokens=12)[0] for p in PROMPTS]
    assert batched == alone


def test_sampling_with_top_k_1_is_greedy(trained_clm):
    greedy = completions(trained_clm, PROMPTS, max_new_tokens=12)
    assert (
        completions(trained_clm, PROMPTS, max_new_tokens=12, do_sample=True, top_k=1, seed=3)
        == greedy
    )


def test_the_same_seed_gives_the_same_samples(trained_clm):
    sample = dict(max_new_tokens=16, do_sample=True, temperature=1.5, num_return_sequences=3)
    first = completions(trained_clm, PROMPTS, seed=7, **sample)
    assert completions(trained_clm, PROMPTS, seed=7, **sample) == first
    assert completions(trained_clm, PROMPTS, seed=8, **sample) != first
    assert len(first) == 9


def test_stop_strings_cut_the_output(trained_clm):
    full = completions(trained_clm, PROMPTS, max_new_tokens=24)
    stopped = completions(trained_clm, PROMPTS, max_new_tokens=24, stop=[","])
    for whole, cut in zip(full, stopped, strict=True):
        assert "," not in cut
        assert cut == whole.split(",")[0]
    assert any("," in whole for whole in full), (
        "the test needs a completion holding the stop string"
    )


def test_stream_prints_what_it_returns(trained_clm):
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(trained_clm),
            "--prompt",
            "The game",
            "--max-new-tokens",
            "12",
            "--stream",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json_line(result.stdout)
    completion = summary["results"][0]["completion"]
    assert completion == completions(trained_clm, ["The game"], max_new_tokens=12)[0]
    assert "The game" + completion in result.stdout


def test_output_file_and_tokens_per_second(trained_clm, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(trained_clm),
            "--prompts",
            str(prompts),
            "--max-new-tokens",
            "8",
            "--output",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in records] == PROMPTS
    assert set(records[0]) == {
        "prompt",
        "completion",
        "prompt_tokens",
        "completion_tokens",
        "seconds",
    }
    assert all(1 <= r["completion_tokens"] <= 8 for r in records)
    summary = json_line(result.stdout)
    assert summary["new_tokens"] == sum(r["completion_tokens"] for r in records)
    assert summary["tokens_per_second"] > 0


def test_fill_mask_on_a_masked_lm(trained_mlm):
    summary = run_generate(
        str(trained_mlm), ["The game was [MASK] in Japan ."], DecodingOptions(top_k=3), show=False
    )
    fills = summary["results"][0]["fills"]
    assert summary["mode"] == "fill-mask" and len(fills) == 3
    assert [f["score"] for f in fills] == sorted((f["score"] for f in fills), reverse=True)
    assert all(f["sequence"].startswith("the game was") or "game" in f["sequence"] for f in fills)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "{tmp}/missing", "--prompt", "x"], "does not exist"),
        (["--model", "{tmp}", "--prompt", "x"], "not a model directory"),
        (["--model", "{clm}"], "no prompt given"),
        (["--model", "{clm}", "--prompts", "{tmp}/empty.txt"], "holds no prompts"),
        (["--model", "{clm}", "--prompts", "{tmp}/missing.txt"], "does not exist"),
        (["--model", "{clm}", "--prompts", "{tmp}/bad.jsonl"], 'has no "prompt" text field'),
        (
            ["--model", "{clm}", "--prompt", "x", "--max-new-tokens", "100"],
            "longer than the model's 64 positions",
        ),
        (
            ["--model", "{clm}", "--prompt", "x", "--stream", "--num-beams", "2"],
            "--stream shows one sequence",
        ),
        (
            ["--model", "{clm}", "--prompt", "x", "--num-return-sequences", "2"],
            "do not go together",
        ),
        (["--model", "{mlm}", "--prompt", "no mask here"], "needs the mask token [MASK]"),
        (["--model", "{clm}", "--prompt", "x", "--do-sample", "--top-p", "1.5"], "in (0, 1]"),
        (["--model", "{clm}", "--prompt", "x", "--top-k", "-1"], "--top-k must be 0 (off)"),
        (["--model", "{clm}", "--prompt", "x", "--temperature", "0"], "must be above 0"),
        (
            ["--model", "{clm}", "--prompt", "x", "--repetition-penalty", "-2"],
            "--repetition-penalty must be above 0",
        ),
    ],
)
def test_user_errors(trained_clm, trained_mlm, tmp_path, args, expected):
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "bad.jsonl").write_text('{"text": "no prompt field"}\n')
    args = [a.format(tmp=tmp_path, clm=trained_clm, mlm=trained_mlm) for a in args]
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("error:") == 1

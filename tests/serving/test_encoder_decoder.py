"""`llmkit serve` with an encoder-decoder (a T5 built by `finetune seq2seq/*`): its completions
are `llmkit generate`'s answers to the same prompts, and it has no chat template."""

import json

from helpers import set_args
from live import LiveServer

T5 = ["model.layers=2", "model.hidden=64", "model.heads=2", "model.intermediate=256"]
T5 += ["task.max_length=128", "task.num_beams=1", "task.max_target_length=16"]


def test_an_encoder_decoder_answers_as_generate(trained_clm, tmp_path, cli):
    rows = [{"document": "The game was released in Japan in 2011 .", "summary": "A game ."}] * 8
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "t5"
    overrides = [f"tokenizer.path={trained_clm}", f"task.train_file={data}"]
    overrides += [f"task.validation_file={data}", "train.max_steps=5", *T5]
    args = ["finetune", "-r", "seq2seq-summarization", "-o", str(run), *set_args(overrides)]
    result, _ = cli(*args)
    assert result.exit_code == 0, result.output
    prompts = ["summarize: The game was released .", "summarize: It sold well in Japan ."]
    generated = [
        cli("generate", "-m", str(run), "-p", p, "--max-new-tokens", "8", "--json")[1]
        for p in prompts
    ]
    live = LiveServer(run)
    try:
        for prompt, expected in zip(prompts, generated, strict=True):
            body = {"prompt": prompt, "max_tokens": 8}
            answer = live.post("/v1/completions", body).json()
            assert answer["choices"][0]["text"] == expected["results"][0]["completion"]
        refused = live.post(
            "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}
        )
        assert refused.status_code == 400 and "no chat template" in refused.text
    finally:
        live.stop()

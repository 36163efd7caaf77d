"""`llmkit serve` with a causal LM, live on 127.0.0.1: the official openai client gets the text
`llmkit generate` prints (plain, streamed, in parallel and so batched), a chat run answers
with its template, and every bad request gets an OpenAI-shaped 4xx while the server serves on."""

import json
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from live import LiveServer

from llmkit.commands.generate import run_generate
from llmkit.generation import DecodingOptions

PROMPTS = ["The game", "In 1999 , the", "It was", "The album was released"]


@pytest.fixture(scope="module")
def server(trained_clm):
    live = LiveServer(trained_clm)
    yield live
    assert live.stop() == -signal.SIGTERM  # shut down cleanly, then ended by the signal


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def generated(model, prompts, tokens=12, **flags):
    options = DecodingOptions(max_new_tokens=tokens, **flags)
    results = run_generate(str(model), prompts, options, show=False)["results"]
    return [r["completion"] for r in results]


def test_completions_equal_generate_plain_and_streamed(server, client, trained_clm):
    expected = generated(trained_clm, PROMPTS)
    for prompt, text in zip(PROMPTS, expected, strict=True):
        answer = client.completions.create(model="trained-clm", prompt=prompt, max_tokens=12)
        assert answer.choices[0].text == text
        assert answer.usage.completion_tokens == 12 and answer.choices[0].finish_reason == "length"
        stream = client.completions.create(
            model="trained-clm", prompt=prompt, max_tokens=12, stream=True
        )
        pieces = [chunk.choices[0].text for chunk in stream if chunk.choices]
        assert "".join(pieces) == text and len(pieces) > 2  # it came in pieces


def test_parallel_requests_are_batched_and_answer_as_alone(server, client, trained_clm):
    prompts = PROMPTS * 4
    expected = dict(zip(PROMPTS, generated(trained_clm, PROMPTS, tokens=16), strict=True))
    before = server.get("/v1/llmkit/info").json()["batching"]

    def ask(prompt):
        return client.completions.create(prompt=prompt, model="trained-clm", max_tokens=16)

    with ThreadPoolExecutor(len(prompts)) as pool:
        answers = list(pool.map(ask, prompts))
    assert [a.choices[0].text for a in answers] == [expected[p] for p in prompts]
    after = server.get("/v1/llmkit/info").json()["batching"]
    calls = after["generate_calls"] - before["generate_calls"]
    assert after["largest_batch"] > 1 and calls < len(prompts), (before, after)


def test_stop_strings_n_and_sampling_with_a_seed(client, trained_clm):
    [full] = generated(trained_clm, ["The game"], tokens=12)
    stop = full.strip().split()[1]  # the second word of the greedy answer
    answer = client.completions.create(
        prompt="The game", max_tokens=12, stop=[stop], model="trained-clm"
    )
    assert answer.choices[0].text == full[: full.index(stop)]
    assert answer.choices[0].finish_reason == "stop"
    sampled = [
        client.completions.create(
            prompt="The game", max_tokens=12, temperature=1.0, seed=7, n=3, model="trained-clm"
        )
        for _ in range(2)
    ]
    texts = [[c.text for c in s.choices] for s in sampled]
    assert texts[0] == texts[1] and len(texts[0]) == 3  # the seed repeats the draw
    assert len(set(texts[0])) > 1  # three samples, not one copied


def test_models_lists_the_run(client):
    assert [m.id for m in client.models.list().data] == ["trained-clm"]


def test_a_run_without_chat_template_refuses_chat(client):
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(
            model="trained-clm", messages=[{"role": "user", "content": "Hi"}]
        )


LONG = "the " * 400  # more tokens than the model's 64 positions

BAD_REQUESTS = [
    ("/v1/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/chat/completions", {"model": "trained-clm"}, 400, "messages"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/completions", {"prompt": ""}, 400, "prompt is empty"),
    ("/v1/completions", {"prompt": "The", "model": "gpt-4"}, 404, "not served here"),
    ("/v1/completions", {"prompt": "The", "max_tokens": -3}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "The", "max_tokens": 500}, 400, "64 positions"),
    ("/v1/completions", {"prompt": "The", "top_p": 1.5}, 400, "top_p"),
    ("/v1/completions", {"prompt": "The", "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {"prompt": LONG, "max_tokens": 4}, 400, "positions"),
    ("/v1/completions", {"prompt": "The", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("/v1/classify", {"text": "good"}, 404, "serves /v1/completions"),
    ("/v1/nothing", {}, 404, "no such route"),
    ("/v1/completions", {"prompt": "x" * (2 << 20)}, 413, "larger than"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_a_bad_request_gets_an_openai_error_and_the_server_serves_on(
    server, path, body, status, message
):
    if isinstance(body, bytes):
        response = server.post(path, data=body, headers={"Content-Type": "application/json"})
    else:
        response = server.post(path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["type"]
    good = server.post("/v1/completions", {"prompt": "The game", "max_tokens": 2})
    assert good.status_code == 200 and good.json()["choices"][0]["text"]


def test_a_key_is_needed_on_every_route_but_health_and_the_page(trained_clm, monkeypatch):
    monkeypatch.setenv("LLMKIT_API_KEY", "s3cret")
    live = LiveServer(trained_clm)
    try:
        assert live.get("/health").status_code == 200 and live.get("/").status_code == 200
        for path in ("/v1/models", "/v1/llmkit/info"):
            assert live.get(path).status_code == 401
        wrong = live.post(
            "/v1/completions", {"prompt": "The"}, headers={"Authorization": "Bearer no"}
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="s3cret", max_retries=0)
        assert client.completions.create(model="trained-clm", prompt="The", max_tokens=3).choices
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0).models.list()
    finally:
        live.stop()


def test_sigterm_lets_the_request_in_flight_finish(trained_clm):
    live = LiveServer(trained_clm)
    response = live.post(
        "/v1/completions", {"prompt": "The", "max_tokens": 60, "stream": True}, stream=True
    )
    lines = response.iter_lines()
    first = next(line for line in lines if line)  # the stream has begun
    live.process.terminate()
    rest = [line for line in lines if line]
    assert live.process.wait(timeout=60) == -signal.SIGTERM
    assert rest[-1] == b"data: [DONE]"
    chunks = [json.loads(line[6:]) for line in [first, *rest[:-1]]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    live.process.stderr.close()


def test_start_up_errors_exit_2_with_one_message(trained_clm, tmp_path, cli, monkeypatch):
    live = LiveServer(trained_clm)
    try:
        port = live.url.rsplit(":", 1)[1]
        result, _ = cli("serve", "-m", str(trained_clm), "--port", port)
        assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output
    finally:
        live.stop()
    result, _ = cli("serve", "-m", str(tmp_path), "--port", "0")
    assert result.exit_code == 2 and "not a model directory" in result.output
    result, _ = cli("serve", "-m", str(trained_clm), "--timeout", "0")
    assert result.exit_code == 2 and "--timeout must be above 0" in result.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    result, _ = cli("serve", "-m", str(trained_clm))
    assert result.exit_code == 2 and "pip install 'llmkit[serve]'" in result.output


def test_a_chat_run_answers_with_its_template_and_its_end_of_turn(chat_run):
    out, _ = chat_run
    system, prompt = "Be brief.", "Which film won?"
    options = DecodingOptions(max_new_tokens=40)
    [expected] = run_generate(str(out), [prompt], options, chat=True, system=system, show=False)[
        "results"
    ]
    live = LiveServer(out)
    try:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        reply = client.chat.completions.create(model="chat-run", messages=messages, max_tokens=40)
        assert reply.choices[0].message.content == expected["completion"]
        # the same tokens as generate's, ending where generate's did (at <|im_end|> or 40)
        assert reply.usage.completion_tokens == expected["completion_tokens"]
        ended_early = expected["completion_tokens"] < 40
        assert reply.choices[0].finish_reason == ("stop" if ended_early else "length")
        stream = client.chat.completions.create(
            model="chat-run", messages=messages, max_tokens=40, stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(pieces) == expected["completion"]
    finally:
        live.stop()


def test_a_request_past_the_timeout_gets_504_and_the_server_serves_on(trained_clm):
    live = LiveServer(trained_clm, "--timeout", "0.001")
    try:
        late = live.post("/v1/completions", {"prompt": "The", "max_tokens": 40})
        assert late.status_code == 504 and "--timeout" in late.json()["error"]["message"]
        assert live.get("/health").status_code == 200
    finally:
        live.stop()

"""`llmkit serve` under load: batching, correctness and memory (issue 30).

A gpt2-tiny run (the recipe's shape, 300 steps on the built-in Shakespeare) is served on
127.0.0.1; the prompts are the first words of 256 different speeches. Every request asks for
32 greedy tokens, streamed, so that each one's time to first token is seen.

1. The expected answers: `llmkit generate` on the same prompts (its default batches of 8).
2. One at a time: the 256 requests sent one after another by one client.
3. 32 clients at once: the same 256 requests, 8 per client, on 32 threads.
   Reported for both: answers equal to generate's, errors, lost requests, aggregate generated
   tokens/s, p50/p95 latency and time to first token; the tokens/s ratio is the target (≥ 4).
4. Memory: 2,000 non-streamed requests by 32 clients, the server's resident memory read
   after each quarter; the last quarter's against the second's (target: within 5%).
5. Which batching: outside the server, the same prompts through transformers' continuous
   batching (`generate_batch`, paged attention, rows joining as others finish) against
   left-padded `generate` calls of 32 rows (what the server's dynamic batcher runs): tokens/s
   and answers equal to `llmkit generate`'s.

Client threads run on the same 2 cores as the server, as a user's load test would.

    python -m benchmarks.serve [--quick]

Results go into benchmarks/out/serve.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.harness import OUT, ROOT, status_mib
from benchmarks.time_to_quality import llmkit

CLIENTS = 32
NEW_TOKENS = 32


def prompts(count: int) -> list[str]:
    """The first three to six words of `count` different speeches of the built-in corpus."""
    path = ROOT / "llmkit" / "data" / "builtin" / "shakespeare.jsonl"
    speeches = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    chosen = []
    for index, speech in enumerate(speeches[:: max(1, len(speeches) // count)][:count]):
        words = speech.split()
        chosen.append(" ".join(words[: 3 + index % 4]))
    return chosen


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "llmkit", "serve", "-m", str(model), "--port", "0"]
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    url = line.split(" on ", 1)[1].split("/ ", 1)[0]
    for _ in range(300):
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return server, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start: {line}")


def ask(url: str, prompt: str) -> dict:
    """One streamed completion: its text, tokens, latency and time to first token."""
    body = {"prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True}
    body["stream_options"] = {"include_usage": True}
    started = time.perf_counter()
    first, text, tokens = None, "", 0
    try:
        with requests.post(f"{url}/v1/completions", json=body, stream=True, timeout=300) as r:
            if r.status_code != 200:
                return {"error": f"{r.status_code} {r.text[:200]}"}
            for line in r.iter_lines():
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return {"error": chunk["error"]["message"]}
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk["choices"]:
                    if choice["text"] and first is None:
                        first = time.perf_counter() - started
                    text += choice["text"]
    except requests.RequestException as e:
        return {"error": str(e)}
    return {"text": text, "tokens": tokens, "latency": time.perf_counter() - started, "ttft": first}


def load(url: str, asked: list[str], clients: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda p: ask(url, p), asked))
    wall = time.perf_counter() - started
    done = [a for a in answers if "error" not in a]
    latencies = sorted(a["latency"] for a in done)
    firsts = sorted(a["ttft"] for a in done if a["ttft"] is not None)

    def pct(values, q):
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    return {
        "clients": clients,
        "requests": len(asked),
        "answered": len(done),
        "errors": [a["error"] for a in answers if "error" in a][:5],
        "seconds": wall,
        "tokens_per_second": sum(a["tokens"] for a in done) / wall,
        "latency_p50": pct(latencies, 0.5),
        "latency_p95": pct(latencies, 0.95),
        "ttft_p50": pct(firsts, 0.5),
        "ttft_p95": pct(firsts, 0.95),
        "texts": [a.get("text") for a in answers],
    }


def memory_run(url: str, pid: int, total: int) -> dict:
    asked = prompts(256)
    quarters = []

    def plain(prompt: str) -> bool:
        body = {"prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0}
        return requests.post(f"{url}/v1/completions", json=body, timeout=300).ok

    with ThreadPoolExecutor(CLIENTS) as pool:
        for quarter in range(4):
            batch = [
                asked[i % len(asked)]
                for i in range(quarter * total // 4, (quarter + 1) * total // 4)
            ]
            ok = sum(pool.map(plain, batch))
            quarters.append({"requests": len(batch), "ok": ok, "rss_mib": status_mib("VmRSS", pid)})
    second, last = quarters[1]["rss_mib"], quarters[3]["rss_mib"]
    return {"quarters": quarters, "growth_second_to_last": (last - second) / second}


def engines(model: Path, asked: list[str], expected: list[str]) -> dict:
    """Continuous batching (transformers' generate_batch) against dynamic batches of 32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmkit.generation import DecodingOptions, generate_batch, generation_config_for

    network = AutoModelForCausalLM.from_pretrained(model).eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    config = generation_config_for(network, tokenizer, DecodingOptions(max_new_tokens=NEW_TOKENS))
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in asked]
    with torch.inference_mode():
        started = time.perf_counter()
        outputs = network.generate_batch(inputs=ids, generation_config=config)
        continuous = time.perf_counter() - started
        texts = [tokenizer.decode(outputs[f"req_{i}"].generated_tokens, skip_special_tokens=True)
                 for i in range(len(ids))]  # fmt: skip
        tokens = sum(len(outputs[f"req_{i}"].generated_tokens) for i in range(len(ids)))
        started = time.perf_counter()
        dynamic = []
        for first in range(0, len(asked), CLIENTS):
            dynamic += generate_batch(
                network, tokenizer, asked[first : first + CLIENTS], config, []
            )
        padded = time.perf_counter() - started
    return {
        "continuous_tokens_per_second": tokens / continuous,
        "continuous_equal_to_generate": sum(t == e for t, e in zip(texts, expected, strict=True)),
        "dynamic_tokens_per_second": sum(c.completion_tokens for c in dynamic) / padded,
        "dynamic_equal_to_generate": sum(
            c.completion == e for c, e in zip(dynamic, expected, strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 requests, 400 for memory")
    options = parser.parse_args()
    count, memory_total = (64, 400) if options.quick else (256, 2000)
    asked = prompts(count)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = folder / "gpt2-tiny"
        llmkit("pretrain-clm", "-r", "gpt2-tiny", "-o", str(model), "--set", "train.max_steps=300")
        (folder / "prompts.txt").write_text("\n".join(asked) + "\n", encoding="utf-8")
        generated = llmkit(
            "generate", "-m", str(model), "--prompts", str(folder / "prompts.txt"),
            "--max-new-tokens", str(NEW_TOKENS),
        )["results"]  # fmt: skip
        expected = [r["completion"] for r in generated]
        server, url = start_server(model)
        try:
            alone = load(url, asked, clients=1)
            together = load(url, asked, clients=CLIENTS)
            batching = requests.get(f"{url}/v1/llmkit/info", timeout=10).json()["batching"]
            memory = memory_run(url, server.pid, memory_total)
        finally:
            server.terminate()
            server.wait(timeout=60)
        engine = engines(model, asked, expected)
    result = {"prompts": count, "new_tokens": NEW_TOKENS, "batching": batching, "memory": memory}
    result["engines"] = engine
    for name, run in (("one at a time", alone), (f"{CLIENTS} clients", together)):
        texts = run.pop("texts")
        run["equal_to_generate"] = sum(t == e for t, e in zip(texts, expected, strict=True))
        result[name] = run
    result["tokens_per_second_ratio"] = together["tokens_per_second"] / alone["tokens_per_second"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("one at a time", f"{CLIENTS} clients"):
        run = result[name]
        print(
            f"{name:14} answered {run['answered']}/{run['requests']}, equal to generate "
            f"{run['equal_to_generate']}, {run['tokens_per_second']:.0f} tok/s, latency p50 "
            f"{run['latency_p50']:.3f} s p95 {run['latency_p95']:.3f} s, first token p50 "
            f"{run['ttft_p50']:.3f} s p95 {run['ttft_p95']:.3f} s"
        )
    print(f"ratio {result['tokens_per_second_ratio']:.2f}x; batching {batching}")
    print(f"engines (outside the server): {engine}")
    print(f"memory {[q['rss_mib'] for q in memory['quarters']]} MiB, "
          f"second to last quarter {100 * memory['growth_second_to_last']:+.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()

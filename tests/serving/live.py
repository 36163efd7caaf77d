"""A live `llmkit serve` in its own process on a free port of 127.0.0.1, for the tests."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests


class LiveServer:
    def __init__(self, model: Path, *flags: str, wait: float = 90.0):
        command = [sys.executable, "-m", "llmkit", "serve", "-m", str(model), "--port", "0", *flags]
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "400"}
        )
        line = (
            self.process.stderr.readline()
        )  # "llmkit serve: NAME (KIND) on http://HOST:PORT/ ..."
        found = re.search(r"on (http://[\d.]+:\d+)/", line)
        if not found:
            self.process.kill()
            raise RuntimeError(f"llmkit serve did not start: {line}{self.process.stderr.read()}")
        self.url = found.group(1)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("llmkit serve did not answer /health")

    def post(self, path: str, body=None, **options) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, timeout=60, **options)

    def get(self, path: str, **options) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=60, **options)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=60)
        finally:
            self.process.stderr.close()

"""`llmkit serve`: a run behind an OpenAI-compatible API, its task endpoint and a web page.

The serving extra (FastAPI, uvicorn, the openai types) is optional: without it the command
says how to install it. The port is bound before the model loads, so "port in use" is said
at once; uvicorn then serves on that socket and, on SIGTERM or Ctrl-C, stops accepting
connections and lets the requests in flight finish (up to SHUTDOWN_GRACE_SECONDS).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from llmkit.console import err
from llmkit.errors import UserError

API_KEY_VARIABLE = "LLMKIT_API_KEY"
SHUTDOWN_GRACE_SECONDS = 30


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import openai  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"llmkit serve needs the serve extra ({e.name} is not installed)",
            "pip install 'llmkit[serve]'",
        ) from e


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port}: {e.strerror}",
            "choose another --port (or stop what is using it)",
        ) from e
    return sock


def serve(
    model_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_batch_size: int = 32,
    timeout: float = 120,
    precision: str = "auto",
) -> None:
    """Serve until stopped. `api_key` (or $LLMKIT_API_KEY) makes every API route require
    `Authorization: Bearer <key>`."""
    if max_batch_size < 1:
        raise UserError(f"--max-batch-size must be at least 1, not {max_batch_size}")
    if timeout <= 0:
        raise UserError(f"--timeout must be above 0 seconds, not {timeout}")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, not {port}")
    _require_extra()
    import uvicorn

    from llmkit.serving.app import create_app
    from llmkit.serving.served import load_served

    api_key = api_key or os.environ.get(API_KEY_VARIABLE) or None
    sock = _bind(host, port)
    served = load_served(Path(model_dir), precision)
    app = create_app(served, api_key=api_key, timeout=timeout, max_batch_size=max_batch_size)
    bound = sock.getsockname()[1]
    err.print(
        f"llmkit serve: {served.name} ({served.kind}) on http://{host}:{bound}/ "
        f"— {', '.join(served.endpoints)}{' — API key required' if api_key else ''}",
        highlight=False,
    )
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS
    )
    uvicorn.Server(config).run(sockets=[sock])

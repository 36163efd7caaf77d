"""The FastAPI application of `llmkit serve`: routes, the API key, limits and error shapes.

Every error a request can cause is answered in OpenAI's shape with a 4xx status, and the
server goes on serving. With an API key, every route but GET /health and the page itself
(a static file holding no data; it asks for the key and sends it) needs
`Authorization: Bearer <key>`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from openai.types import Model
from starlette.exceptions import HTTPException

from llmkit.serving import openai_api, tasks
from llmkit.serving.batcher import Batcher
from llmkit.serving.errors import ApiError
from llmkit.serving.served import Served

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far above any prompt that fits a model's positions
OPEN_PATHS = {"/", "/health"}


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    param = ".".join(where) or None
    return (f"{param}: {first['msg']}" if param else first["msg"]), param


def create_app(
    served: Served, *, api_key: str | None = None, timeout: float = 120.0, max_batch_size: int = 32
) -> FastAPI:
    batcher = (
        Batcher(served.model, served.tokenizer, max_batch_size)
        if served.kind == "generate"
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if batcher is not None:
            batcher.start()
        yield
        if batcher is not None:  # uvicorn has let the requests in flight finish
            await asyncio.to_thread(batcher.close)

    app = FastAPI(title=f"llmkit serve: {served.name}", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        message, param = _validation_message(error)
        return JSONResponse(ApiError(400, message, param=param).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        message = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
        if error.status_code == 404:
            message = f"no such route: {request.method} {request.url.path}"
        return JSONResponse(
            ApiError(error.status_code, message).body(), status_code=error.status_code
        )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """The body's size (declared, or read when sent in chunks), then the API key."""
        size = request.headers.get("content-length")
        if size is None and request.method == "POST":
            size = len(await request.body())  # kept: the route reads it again
        if int(size or 0) > MAX_BODY_BYTES:
            error = ApiError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
            return JSONResponse(error.body(), status_code=413)
        if api_key and request.url.path not in OPEN_PATHS:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                error = ApiError(401, "a valid API key is needed: Authorization: Bearer <key>",
                                 code="invalid_api_key")  # fmt: skip
                return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    def require(endpoint: str, model: str | None) -> None:
        if endpoint not in served.endpoints:
            raise ApiError(
                404,
                f"{served.name} is a {served.kind} model; it serves {', '.join(served.endpoints)}",
                code="endpoint_not_served",
            )
        if not served.answers_to(model):
            raise ApiError(404, f"the model {model!r} is not served here; this server serves "
                           f"{served.name!r}", param="model", code="model_not_found")  # fmt: skip

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": served.name}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files("llmkit.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/v1/llmkit/info")
    async def info():
        batches = batcher.batches if batcher is not None else []
        batching = {"generate_calls": len(batches), "largest_batch": max(batches, default=0)}
        return {**served.describe(), **({"batching": batching} if batcher else {})}

    @app.get("/v1/models")
    async def models():
        created = int(served.path.stat().st_mtime)
        model = Model(id=served.name, created=created, object="model", owned_by="llmkit")
        return {"object": "list", "data": [model.model_dump(exclude_none=True)]}

    @app.post("/v1/completions")
    async def completions(request: openai_api.CompletionRequest):
        require("/v1/completions", request.model)
        return await openai_api.complete(served, batcher, request, timeout)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: openai_api.ChatRequest):
        require("/v1/chat/completions", request.model)
        return await openai_api.chat(served, batcher, request, timeout)

    def task_route(path: str, request_model, handler) -> None:
        async def route(request):
            require(path, request.model)

            def run():
                with served.lock:
                    return handler(served, request)

            try:
                return await asyncio.wait_for(run_in_threadpool(run), timeout)
            except TimeoutError:
                raise ApiError(504, "the request took longer than the server's --timeout") from None

        route.__annotations__["request"] = request_model  # a class, not this module's string
        app.post(path)(route)

    task_route("/v1/classify", tasks.ClassifyRequest, tasks.classify)
    task_route("/v1/fill-mask", tasks.FillMaskRequest, tasks.fill_mask)
    task_route("/v1/answer", tasks.AnswerRequest, tasks.answer)
    task_route("/v1/entities", tasks.EntitiesRequest, tasks.entities)
    return app

"""The sandbox's ASGI app: both providers' routes on one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import anthropic_api, batches, openai_api, tokens
from sandbox.state import Sandbox, Settings
from sandbox.streaming import quiet_dropped_connections
from sandbox.trace import TraceLog, trace_endpoint


def _is_anthropic(request: Request) -> bool:
    # Both providers serve GET /v1/models; only Anthropic's SDK sends anthropic-version.
    return "anthropic-version" in request.headers


def list_models(request: Request) -> Response:
    """GET /v1/models in the calling provider's shape."""
    if _is_anthropic(request):
        return anthropic_api.list_models(request)
    return openai_api.list_models(request)


def get_model(request: Request) -> Response:
    """GET /v1/models/{model_id} in the calling provider's shape."""
    if _is_anthropic(request):
        return anthropic_api.get_model(request)
    return openai_api.get_model(request)


def health(request: Request) -> Response:
    """GET /health: the sandbox is up."""
    return JSONResponse({"status": "ok"})


def create_app(
    *,
    tokens_per_second: float = 40.0,
    ttft_ms: int = 300,
    max_context: int | None = None,
    trace: bool = False,
    batch_seconds: float = 10.0,
) -> Starlette:
    """Return the sandbox ASGI app with the given pacing and context cap.

    batch_seconds is how long a Message Batch takes to process (see sandbox.batches).

    trace=True records when each streamed delta is emitted and serves the record at
    /sandbox/trace (see sandbox.trace); it is off by default.
    """
    if tokens_per_second <= 0:
        raise ValueError("tokens_per_second must be positive")
    # Load the encoding now so the first request does not pay for it.
    tokens.encoding()
    quiet_dropped_connections()
    app = Starlette(
        routes=[
            Route("/v1/messages", anthropic_api.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", anthropic_api.count_tokens, methods=["POST"]),
            Route("/v1/messages/batches", batches.batches_root, methods=["GET", "POST"]),
            Route("/v1/messages/batches/{batch_id}", batches.batch_item, methods=["GET", "DELETE"]),
            Route("/v1/messages/batches/{batch_id}/cancel", batches.cancel, methods=["POST"]),
            Route("/v1/messages/batches/{batch_id}/results", batches.results, methods=["GET"]),
            Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    if trace:
        app.router.routes.append(Route("/sandbox/trace", trace_endpoint, methods=["GET", "DELETE"]))
    settings = Settings(
        tokens_per_second=tokens_per_second, ttft_ms=ttft_ms, max_context=max_context
    )
    app.state.sandbox = Sandbox(settings, trace=TraceLog() if trace else None)
    app.state.batches = batches.BatchStore(batch_seconds)
    return app

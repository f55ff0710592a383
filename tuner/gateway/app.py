"""The gateway's FastAPI app: OpenAI-compatible routes over one upstream and one preset.

Routes: POST /v1/chat/completions and /v1/completions (one voted answer per request),
GET /v1/models (the served model), GET /health (the gateway and its upstream), GET /metrics
(Prometheus). /v1/* require ``Authorization: Bearer KEY`` when `settings.api_key` is set;
/health and /metrics stay open, as on vLLM's server (bind them to 127.0.0.1 or a private
network). Every refusal is an OpenAI-style error JSON with a 4xx status and a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from profilers import get_task
from profilers.tasks.base import Task
from profilers.voting import VoteRule, vote_rule
from tuner.gateway.admission import Admission
from tuner.gateway.branches import BranchSet
from tuner.gateway.client_request import parse_request
from tuner.gateway.errors import GatewayError
from tuner.gateway.metrics import MISS_SLACK_S, GatewayMetrics
from tuner.gateway.responses import completion_body, latts_extension, vote_margin
from tuner.gateway.settings import GatewaySettings
from tuner.gateway.upstream import Outcome, build_client, run_branches, upstream_payload

logger = logging.getLogger(__name__)


@dataclass
class GatewayState:
    """What the routes share: settings, the parsed rule and task, limits, metrics, client."""

    settings: GatewaySettings
    rule: VoteRule
    task: Task
    admission: Admission
    metrics: GatewayMetrics
    client: httpx.AsyncClient | None = None


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway for `settings`; UserInputError for an unknown task or vote rule."""
    admission = Admission(settings.max_concurrent_requests, settings.waiting_limit)
    metrics = GatewayMetrics(settings.n_branches)
    metrics.in_flight.set_function(lambda: admission.running)
    metrics.waiting.set_function(lambda: admission.waiting)
    task = settings.resolved_task or get_task(settings.task)
    state = GatewayState(settings, vote_rule(settings.vote_rule), task, admission, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.client = build_client(settings)
        try:
            yield
        finally:
            await state.client.aclose()

    app = FastAPI(title="latts-tune gateway", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.gateway = state
    _add_routes(app, state)
    _add_error_handlers(app)
    return app


def _add_routes(app: FastAPI, state: GatewayState) -> None:
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _complete(state, request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _complete(state, request, "completions")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            _check_api_key(request, state.settings)
        except GatewayError as error:
            return _refuse(state, request, "models", error)
        return _json({"object": "list", "data": [
            {"id": state.settings.served_model, "object": "model", "created": 0,
             "owned_by": "latts-tune"}]})

    @app.get("/health")
    async def health() -> Response:
        return await _health(state)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        # unknown routes (404) and wrong methods (405), in the OpenAI error shape
        message = f"Invalid URL ({request.method} {request.url.path}): {error.detail}"
        logger.warning("%s %s -> %d: %s", request.method, request.url.path,
                       error.status_code, error.detail)
        return GatewayError(error.status_code, message, code="invalid_url").response()

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> Response:
        logger.exception("%s %s failed", request.method, request.url.path)
        return GatewayError(500, f"internal gateway error: {type(error).__name__}",
                            type_="server_error", code="internal_error").response()


async def _complete(state: GatewayState, request: Request, kind: str) -> Response:
    """One client request: check, admit, stream and vote upstream, answer."""
    loop = asyncio.get_running_loop()
    arrived_at = loop.time()  # the deadline counts from here (monotonic)
    settings = state.settings
    try:
        _check_api_key(request, settings)
        body = await _read_body(request, settings)
        client_request = parse_request(kind, body, settings)
        deadline_at = arrived_at + settings.deadline_s
        async with state.admission.slot(deadline_at):
            outcome = await _vote(state, kind, client_request.prompt, client_request.seed,
                                  arrived_at, deadline_at)
    except GatewayError as error:
        _observe_latency(state, kind, loop.time() - arrived_at)
        return _refuse(state, request, kind, error)
    elapsed_s = loop.time() - arrived_at
    response = _answer(state, kind, outcome, elapsed_s)
    _observe_latency(state, kind, elapsed_s)
    return response


async def _vote(state: GatewayState, kind: str, prompt: dict, seed: int | None,
                arrived_at: float, deadline_at: float) -> Outcome:
    assert state.client is not None, "the app's lifespan creates the upstream client"
    settings = state.settings
    branches = BranchSet(settings.n_branches, kind, state.task.extract_answer)
    payload = upstream_payload(kind, prompt, seed, settings)
    state.metrics.branches_started.inc(settings.n_branches)
    return await run_branches(state.client, kind, payload, branches, state.rule, arrived_at,
                              deadline_at)


def _answer(state: GatewayState, kind: str, outcome: Outcome, elapsed_s: float) -> Response:
    settings = state.settings
    extension = latts_extension(outcome, state.rule.key(), settings.deadline_s, elapsed_s)
    _count_outcome(state.metrics, extension, elapsed_s - settings.deadline_s)
    state.metrics.requests.labels(kind, "200").inc()
    return _json(completion_body(kind, outcome, settings.served_model, extension))


def _count_outcome(metrics: GatewayMetrics, extension: dict, late_s: float) -> None:
    metrics.branches_finished.inc(extension["branches_finished"])
    metrics.branches_aborted.inc(extension["branches_aborted"])
    metrics.vote_margin.observe(vote_margin(extension["votes"]))
    metrics.deadline_cuts.inc(extension["deadline_cut"])
    metrics.early_stops.inc(extension["early_stop"])
    metrics.deadline_misses.inc(late_s > MISS_SLACK_S)


def _observe_latency(state: GatewayState, kind: str, elapsed_s: float) -> None:
    state.metrics.latency.labels(kind).observe(elapsed_s)


def _refuse(state: GatewayState, request: Request, endpoint: str,
            error: GatewayError) -> Response:
    client = request.client.host if request.client else "?"
    logger.warning("%s %s from %s -> %d %s: %s", request.method, request.url.path, client,
                   error.status, error.code, error.message)
    state.metrics.requests.labels(endpoint, str(error.status)).inc()
    if error.type == "upstream_error":
        state.metrics.upstream_errors.labels(error.code or "unknown").inc()
    return error.response()


def _check_api_key(request: Request, settings: GatewaySettings) -> None:
    if settings.api_key is None:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    # constant-time comparison: the key must not leak through response timing
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(),
                                                             settings.api_key.encode()):
        raise GatewayError(401, "Incorrect or missing API key: send Authorization: Bearer "
                           "KEY (the gateway's LATTS_TUNE_API_KEY).", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})


async def _read_body(request: Request, settings: GatewaySettings) -> bytes:
    """The body, at most `max_request_bytes`, read within `client_read_timeout_s`."""
    limit = settings.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(settings.client_read_timeout_s):
            async for piece in request.stream():
                body += piece
                if len(body) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise GatewayError(408, f"the request body did not arrive within "
                           f"{settings.client_read_timeout_s} s", code="request_timeout"
                           ) from None
    return bytes(body)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than the gateway's limit of {limit} "
                        "bytes.", code="request_too_large")


async def _health(state: GatewayState) -> Response:
    """200 when the upstream answers its /health in time, else 503 with the reason."""
    assert state.client is not None, "the app's lifespan creates the upstream client"
    try:
        upstream = await state.client.get("/health", timeout=state.settings.health_timeout_s)
        healthy = upstream.status_code == 200
        reason = f"upstream /health answered {upstream.status_code}"
    except httpx.HTTPError as error:
        healthy, reason = False, f"upstream unreachable: {type(error).__name__}"
    body = {"status": "ok" if healthy else "unavailable", "upstream": state.settings.upstream_url,
            "time": time.time()}
    if not healthy:
        body["reason"] = reason
    return _json(body, 200 if healthy else 503)


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")

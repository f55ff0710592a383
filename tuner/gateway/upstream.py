"""One upstream streaming request with n branches: vote as branches finish, cut at the deadline.

Abort works by closing the stream: vLLM's OpenAI server aborts a request whose client
disconnects, which stops every branch (vLLM runs n > 1 as child requests of one request).
Leaving the `client.stream(...)` block early closes the connection at once (httpx does not
return a half-read connection to its pool).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import httpx

from profilers.voting import Verdict, VoteRule
from tuner.gateway.branches import BranchSet
from tuner.gateway.errors import GatewayError, upstream_error
from tuner.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
ERROR_BODY_BYTES = 4096  # enough of an upstream error body for its message


@dataclass(frozen=True)
class Outcome:
    """How one request ended: the branches, the verdict and why it stopped."""

    branches: BranchSet
    verdict: Verdict
    deadline_cut: bool
    early_stop: bool


def build_client(settings: GatewaySettings) -> httpx.AsyncClient:
    """The upstream client: every wait bounded; reads end at the deadline well before."""
    headers = {"Authorization": f"Bearer {settings.upstream_api_key}"} \
        if settings.upstream_api_key else {}
    timeout = httpx.Timeout(settings.deadline_s + settings.connect_timeout_s,
                            connect=settings.connect_timeout_s)
    connections = settings.max_concurrent_requests + settings.waiting_limit + 2
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=settings.upstream_url, headers=headers, timeout=timeout,
                             limits=limits)


def upstream_payload(kind: str, prompt: dict, seed: int | None,
                     settings: GatewaySettings) -> dict:
    """The upstream request: the client's prompt with the preset's sampling, n branches."""
    payload = {"model": settings.served_model, **prompt, "n": settings.n_branches,
               "temperature": settings.temperature, "top_p": settings.top_p,
               "max_tokens": settings.max_tokens, "stream": True,
               "stream_options": {"include_usage": True},
               "return_token_ids": True}  # vLLM: exact token counts for the ballots
    if settings.stop:
        payload["stop"] = list(settings.stop)
    if seed is not None:
        payload["seed"] = seed
    if settings.stream_interval_tokens is not None:
        payload["stream_interval"] = settings.stream_interval_tokens
    return payload


async def run_branches(client: httpx.AsyncClient, kind: str, payload: dict,
                       branches: BranchSet, rule: VoteRule, arrived_at: float,
                       deadline_at: float) -> Outcome:
    """Stream the branches until the rule is final, the stream ends or the deadline
    (event-loop clock, monotonic) passes; the upstream request is closed in every case."""
    loop = asyncio.get_running_loop()
    started = len(branches.branches)
    verdict = Verdict(None, final=False)
    try:
        async with asyncio.timeout_at(deadline_at):
            async with client.stream("POST", PATHS[kind], json=payload) as response:
                await _check_status(response)
                async for chunk in _sse_chunks(response):
                    for _ in branches.absorb(chunk, loop.time() - arrived_at):
                        verdict = rule.decide(branches.ballots(), started)
                    if verdict.final and _unfinished(branches):
                        return Outcome(branches, verdict, False, early_stop=True)  # aborts
    except TimeoutError:
        verdict = rule.decide(branches.ballots(), started)
        return Outcome(branches, verdict, deadline_cut=_unfinished(branches), early_stop=False)
    except httpx.HTTPError as error:
        raise upstream_error(f"upstream request failed: {type(error).__name__}: {error}") \
            from error
    # read to the end (every branch finished): the connection goes back to the pool
    return Outcome(branches, rule.decide(branches.ballots(), started), False, False)


def _unfinished(branches: BranchSet) -> bool:
    return any(not branch.finished for branch in branches.branches)


async def _sse_chunks(response: httpx.Response):
    """The JSON chunks of a server-sent-event stream, up to ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            continue  # read the body to its end, so the connection can be reused
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise upstream_error(f"unreadable upstream stream line: {payload[:200]!r}") from None
        if "error" in chunk:
            raise upstream_error(f"upstream error in the stream: {chunk['error']}")
        yield chunk


async def _check_status(response: httpx.Response) -> None:
    """Pass the upstream's 4xx about the request on (e.g. a prompt too long for the model);
    anything else is the gateway's or the upstream's problem: 502."""
    if response.status_code == 200:
        return
    body = await _read_some(response)
    message = _upstream_message(body) or f"upstream answered {response.status_code}"
    if response.status_code in (400, 413, 422):
        raise GatewayError(400, message, code="upstream_rejected")
    raise upstream_error(f"upstream answered {response.status_code}: {message}",
                         code=f"upstream_{response.status_code}")


async def _read_some(response: httpx.Response) -> bytes:
    body = b""
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) >= ERROR_BODY_BYTES:
            break
    return body[:ERROR_BODY_BYTES]


def _upstream_message(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict):
        return str(error.get("message"))
    return str(error) if error else None

"""The concurrency limit: a slot per running request, an optional bounded wait, else 429.

The preset's latency prediction assumes a request's branches own the engine
(`max-num-seqs` = N; a preset tuned under a load sets the limit to the requests its
engine was sized for, `request.max_in_flight`), so by default a request above the limit is
refused at once with 429
and a Retry-After saying when the earliest running request ends (its deadline): a client or
load balancer can then retry here or elsewhere. A bounded queue is available; a queued
request's wait counts against its own deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tuner.gateway.errors import GatewayError

MIN_RETRY_AFTER_S = 0.05


class Admission:
    """Admit at most `running_limit` requests at once and let `waiting_limit` wait."""

    def __init__(self, running_limit: int, waiting_limit: int) -> None:
        self.running_limit = running_limit
        self.waiting_limit = waiting_limit
        self._slots = asyncio.Semaphore(running_limit)
        self._ends_at: dict[int, float] = {}  # running requests' deadlines (loop clock)
        self._tokens = itertools.count()
        self.waiting = 0

    @property
    def running(self) -> int:
        return len(self._ends_at)

    @asynccontextmanager
    async def slot(self, deadline_at: float) -> AsyncIterator[None]:
        """Hold a slot for the body of the `async with`; 429 if none frees in time."""
        await self._acquire(deadline_at)
        token = next(self._tokens)
        self._ends_at[token] = deadline_at
        try:
            yield
        finally:
            del self._ends_at[token]
            self._slots.release()

    async def _acquire(self, deadline_at: float) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without waiting
            return
        if self.waiting >= self.waiting_limit:
            raise self._busy(f"{self.running} requests are running (the limit)")
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline_at):
                await self._slots.acquire()
        except TimeoutError:
            raise self._busy("no slot freed before this request's deadline") from None
        finally:
            self.waiting -= 1

    def _busy(self, why: str) -> GatewayError:
        retry_after_s = self.retry_after_s()
        headers = {"Retry-After": str(math.ceil(retry_after_s)),
                   "retry-after-ms": str(math.ceil(retry_after_s * 1000))}
        return GatewayError(429, f"The gateway is at its concurrency limit: {why}. Retry "
                            f"after {retry_after_s:.2f} s.", type_="rate_limit_error",
                            code="rate_limit_exceeded", headers=headers)

    def retry_after_s(self) -> float:
        """Seconds until the earliest running request's deadline (when a slot frees)."""
        if not self._ends_at:
            return MIN_RETRY_AFTER_S
        now = asyncio.get_running_loop().time()
        return max(MIN_RETRY_AFTER_S, min(self._ends_at.values()) - now)

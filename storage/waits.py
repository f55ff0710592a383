"""Network waits: each is bounded by a timeout and, when it lasts, says what it waits for.

A server that accepts a connection and never answers held `validate --server-url` for 600 s
with no output. Every wait on a database or inference server now has connect and read
timeouts (`NETWORK_TIMEOUT_S` unless --network-timeout says otherwise), and `announced`
logs a warning naming the wait once it has lasted `NOTICE_AFTER_S` (or half its timeout).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT_S = 30.0  # a healthy server answers in milliseconds; a cold one in seconds
NOTICE_AFTER_S = 5.0  # or half the timeout, if shorter


@contextmanager
def announced(what: str, timeout_s: float) -> Iterator[None]:
    """Log "still waiting for WHAT" if the block lasts longer than `NOTICE_AFTER_S` or half
    of `timeout_s`, whichever is shorter."""
    notice_after_s = min(NOTICE_AFTER_S, timeout_s / 2)
    timer = threading.Timer(notice_after_s, logger.warning,
                            ("still waiting for %s (giving up after %g s)", what, timeout_s))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()

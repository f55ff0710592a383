"""Session fixtures shared by every test package: a real PostgreSQL server.

`postgres_server` starts one server per session (see postgres_server.py). Without the
binaries the postgres tests skip, with the reason in the summary; when CI=true or
LATTS_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead.

Engines run with vLLM's VLLM_ENABLE_V1_MULTIPROCESSING=0: an in-process engine keeps its
engine core and worker in the test's process, `vllm serve` its worker in the engine core.
The same engine, started from a fresh process in about 22 s instead of about 50 s
(tb-large, benchmarks/results/engine_start.md), because fewer processes re-import vLLM
and torch. Tests of the engine's
processes run with `vllm_server.multiprocess_engine_env()`, the deployed layout.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading

import pytest
from postgres_server import PostgresUnavailable, find_binaries, timed_start
from unavailable import in_ci, missing
from vllm_server import IN_PROCESS_ENGINE_VAR

_database_numbers = itertools.count()
os.environ.setdefault(IN_PROCESS_ENGINE_VAR, "0")


def postgres_required() -> bool:
    """True in CI, where a missing server must fail the postgres tests, not skip them."""
    return in_ci() or os.environ.get("LATTS_REQUIRE_POSTGRES") == "1"


def pytest_report_header(config) -> str:
    bin_dir = find_binaries()
    if bin_dir:
        return f"postgres: binaries in {bin_dir} (tests start their own server)"
    verdict = "FAIL (required here)" if postgres_required() else "be SKIPPED"
    return f"postgres: binaries NOT FOUND; the postgres tests will {verdict}"


@pytest.fixture(scope="session")
def postgres_server():
    """A running throwaway PostgreSQL server, stopped at the end of the session."""
    try:
        server, start_s = timed_start()
    except PostgresUnavailable as error:
        missing(f"NO POSTGRESQL: {error}", required=postgres_required())
    print(f"\npostgres server on port {server.port} started in {start_s:.2f} s")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server, dropped after the test."""
    name = f"latts_test_{os.getpid()}_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def silent_port():
    """A TCP port on 127.0.0.1 whose server accepts connections and never answers (a hung
    server or upstream, for the tests of bounded waits)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()

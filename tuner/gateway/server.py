"""Running the gateway: `serve` (blocking, optionally with its own vLLM child) and
`start_in_thread` (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import uvicorn

from storage import UserInputError
from tuner.gateway.app import create_app
from tuner.gateway.engine import start_engine
from tuner.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
KEEP_ALIVE_S = 5.0  # idle client connections are closed after this
SHUTDOWN_GRACE_S = 5.0  # beyond the deadline, for in-flight requests to finish
CONNECTION_HEADROOM = 32  # uvicorn's hard cap above the admitted + waiting requests
THREAD_START_TIMEOUT_S = 10.0


def check_upstream(settings: GatewaySettings) -> None:
    """UserInputError unless the upstream answers /v1/models and serves the model."""
    headers = {"Authorization": f"Bearer {settings.upstream_api_key}"} \
        if settings.upstream_api_key else {}
    url = f"{settings.upstream_url}/v1/models"
    try:
        response = httpx.get(url, headers=headers, timeout=settings.connect_timeout_s)
    except httpx.HTTPError as error:
        raise UserInputError(f"cannot reach the upstream at {url} ({error}); start it or "
                             "fix the upstream URL") from None
    if response.status_code == 401:
        raise UserInputError(f"{url} refused the request (401): set LATTS_TUNE_API_KEY to the "
                             "upstream's API key")
    served = _served_models(response) if response.status_code == 200 else []
    if settings.served_model not in served:
        raise UserInputError(f"the upstream at {settings.upstream_url} serves "
                             f"{', '.join(map(str, served)) or 'nothing'}, not "
                             f"{settings.served_model!r}; start it with the preset's config "
                             "(served-model-name)")


def _served_models(response: httpx.Response) -> list[str]:
    try:
        return [str(entry.get("id")) for entry in response.json().get("data", [])]
    except (ValueError, AttributeError):
        return []  # not an OpenAI model list


def uvicorn_config(settings: GatewaySettings, host: str, port: int,
                   log_level: str = "info") -> uvicorn.Config:
    limit = settings.max_concurrent_requests + settings.waiting_limit + CONNECTION_HEADROOM
    return uvicorn.Config(create_app(settings), host=host, port=port, log_level=log_level,
                          timeout_keep_alive=int(KEEP_ALIVE_S), limit_concurrency=limit,
                          timeout_graceful_shutdown=int(settings.deadline_s + SHUTDOWN_GRACE_S),
                          server_header=False)


def serve(settings: GatewaySettings, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
          engine_config: Path | None = None, engine_env: Mapping[str, str] | None = None,
          log_level: str = "info") -> None:
    """Serve until interrupted. With `engine_config` (a vLLM config YAML), start `vllm
    serve` from it on 127.0.0.1 first, use it as the upstream, and stop it on the way out."""
    with _sigterm_exits(), contextlib.ExitStack() as cleanup:
        if engine_config is not None:
            engine = start_engine(engine_config, env=engine_env,
                                  api_key=settings.upstream_api_key)
            cleanup.callback(engine.stop)
            settings = dataclasses.replace(settings, upstream_url=engine.base_url)
        check_upstream(settings)
        logger.info("gateway on http://%s:%d -> %s (%s, n=%d, deadline %.3f s)", host, port,
                    settings.upstream_url, settings.served_model, settings.n_branches,
                    settings.deadline_s)
        uvicorn.Server(uvicorn_config(settings, host, port, log_level)).run()


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """Make SIGTERM raise SystemExit(0), so the engine's stop runs. uvicorn shuts down
    gracefully on SIGTERM, restores the handler it found (this one) and re-raises the
    signal to it; with the default handler the process would die with its child running."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = signal.signal(signal.SIGTERM, _exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_now(number: int, frame: object) -> None:
    raise SystemExit(0)


class RunningGateway:
    """A gateway served from a thread of this process; `stop()` ends it."""

    def __init__(self, settings: GatewaySettings, host: str = "127.0.0.1",
                 log_level: str = "warning") -> None:
        self.settings = settings
        self._socket = socket.socket()
        self._socket.bind((host, 0))  # our own socket: no race for a free port
        self.base_url = f"http://{host}:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn_config(settings, host, 0, log_level))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self) -> RunningGateway:
        self._thread.start()
        started = time.monotonic()
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() - started > THREAD_START_TIMEOUT_S:
                raise RuntimeError(f"the gateway thread did not start ({self.base_url})")
            time.sleep(0.01)
        return self

    @property
    def app(self):
        return self._server.config.app

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(self.settings.deadline_s + SHUTDOWN_GRACE_S + 5)
        self._socket.close()


def start_in_thread(settings: GatewaySettings, host: str = "127.0.0.1",
                    log_level: str = "warning") -> RunningGateway:
    """Start a gateway in a daemon thread on a free port; returns once it accepts."""
    return RunningGateway(settings, host, log_level).start()

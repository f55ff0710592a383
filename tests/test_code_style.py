"""The code style the project holds itself to: ruff everywhere, mypy on tuner/ and storage/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                          text=True)


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "tuner", "profilers", "storage", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_tuner_and_storage():
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr

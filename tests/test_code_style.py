"""The code style the project holds itself to: ruff everywhere, mypy on tuner/ and storage/,
and the architecture contracts of pyproject.toml checked by import-linter."""

import os
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


def test_import_contracts_are_kept():
    # tests/import_contracts.py holds the custom "no private names" contract type.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    result = subprocess.run([sys.executable, "-c", command, "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout

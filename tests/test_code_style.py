"""The code style the project holds itself to: ruff everywhere, mypy on tuner/ and storage/,
and the architecture contracts of pyproject.toml checked by import-linter."""

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
    # The command a developer runs; tests/import_contracts.py holds the custom "no private
    # names" contract type (pyproject names it tests.import_contracts).
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout

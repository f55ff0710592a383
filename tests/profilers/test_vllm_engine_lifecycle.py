"""Engine processes never outlive the latts-tune process that started them, and a crash
with a live engine exits instead of hanging in multiprocessing's exit handler."""

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from vllm_server import multiprocess_engine_env

from profilers.testbed.family import model_dir

pytestmark = pytest.mark.engine

START_THEN = """
import sys, time
from profilers.vllm_engine import VllmEngine

if __name__ == "__main__":
    engine = VllmEngine(sys.argv[1], max_model_len=64)
    print("ready", flush=True)
    if sys.argv[2] == "crash":
        raise RuntimeError("a bug while the engine runs")
    time.sleep(600)
"""
EXIT_TIMEOUT_S = 60


def _start(mode: str, log) -> tuple[subprocess.Popen, list[psutil.Process]]:
    # stderr to a file: vLLM's start-up log could fill a pipe nobody reads yet
    process = subprocess.Popen([sys.executable, "-c", START_THEN, str(model_dir("tb-draft")),
                                mode], stdout=subprocess.PIPE, stderr=log, text=True,
                               env=multiprocess_engine_env())  # the processes under test
    assert process.stdout.readline().strip() == "ready", Path(log.name).read_text()[-2000:]
    children = psutil.Process(process.pid).children(recursive=True)
    assert any(c.name().startswith("VLLM") for c in children), [c.name() for c in children]
    return process, children


def _left_running(children: list[psutil.Process]) -> int:
    _, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()
    return len(alive)


def test_engine_processes_exit_when_their_parent_is_killed(tmp_path):
    with (tmp_path / "stderr.log").open("w") as log:
        process, children = _start("wait", log)
        process.send_signal(signal.SIGKILL)  # the parent gets no chance to clean up
        process.wait()
    assert _left_running(children) == 0


def test_an_exception_with_a_live_engine_exits_and_stops_the_engine(tmp_path):
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log:
        process, children = _start("crash", log)
        try:
            process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the process did not exit within {EXIT_TIMEOUT_S} s of its exception")
    assert process.returncode == 1 and "a bug while the engine runs" in log_path.read_text()
    assert _left_running(children) == 0

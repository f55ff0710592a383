"""Measure vLLM engine start time (model load to ready) for the testbed models.

Also the engine layouts side by side, each from a fresh Python process as a CLI command
or test pays it (process start to engine ready): vLLM's default (engine core and worker
in processes of their own, as deployed) and VLLM_ENABLE_V1_MULTIPROCESSING=0 (both in the
calling process), which the test suite uses (tests/conftest.py).

Run: .venv/bin/python benchmarks/engine_start.py
Writes benchmarks/results/engine_start.json and .md with the machine description.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
LAYOUTS = {"deployed (separate processes)": "1", "in-process (the tests')": "0"}
FRESH_START = """
import sys
from profilers.vllm_engine import VllmEngine
if __name__ == "__main__":
    VllmEngine(sys.argv[1], max_model_len=160).close()
"""


def _fresh_process_seconds(model: str, multiprocessing: str) -> float:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": multiprocessing}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FRESH_START, model], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - started


def _start_seconds(model: str, speculative=None) -> float:
    from profilers.vllm_engine import VllmEngine

    started = time.perf_counter()
    engine = VllmEngine(model, speculative, max_model_len=160)
    elapsed = time.perf_counter() - started
    engine.close()
    return elapsed


def main() -> None:
    from profilers import SpeculativeConfig, describe_local_hardware
    from profilers.testbed.family import model_dir
    from profilers.vllm_engine import engine_version

    draft = str(model_dir("tb-draft"))
    cases = {
        "tb-large": (str(model_dir("tb-large")), None),
        "tb-large + tb-draft gamma=4": (str(model_dir("tb-large")),
                                        SpeculativeConfig.draft_model(draft, 4)),
    }
    rows = {}
    for label, (model, speculative) in cases.items():
        samples = [_start_seconds(model, speculative) for _ in range(2)]
        rows[label] = {"seconds": samples, "median_s": statistics.median(samples)}
    for label in LAYOUTS:  # alternated below, so drift hits both alike
        rows[f"tb-large, fresh process, {label}"] = {"seconds": []}
    for _ in range(2):
        for label, flag in LAYOUTS.items():
            rows[f"tb-large, fresh process, {label}"]["seconds"].append(
                _fresh_process_seconds(str(model_dir("tb-large")), flag))
    for label in LAYOUTS:
        row = rows[f"tb-large, fresh process, {label}"]
        row["median_s"] = statistics.median(row["seconds"])
    hardware = describe_local_hardware()
    machine = f"{hardware.cpu_model}, {hardware.cpu_cores} cores, {hardware.memory_gib} GiB"
    result = {"machine": machine, "engine": engine_version(),
              "command": "python benchmarks/engine_start.py", "starts": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_start.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Engine start time\n\n{machine}; {result['engine']}; `{result['command']}`\n",
             "| engine | starts (s) | median (s) |", "|---|---|---:|"]
    for label, row in rows.items():
        starts = ", ".join(f"{s:.1f}" for s in row["seconds"])
        lines.append(f"| {label} | {starts} | {row['median_s']:.1f} |")
    (RESULTS / "engine_start.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

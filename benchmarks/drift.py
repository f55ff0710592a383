"""How much a configuration's latency moves between engine starts and over time.

The margin (tuner/core/margin.py) needs two spreads that no single run shows: a new
engine start is faster or slower than the one that was measured, and the machine itself
drifts over an hour (shared machines). Each round starts every slice's engine twice, back
to back, and runs the same seeded requests on each start; per start the mean of
log(measured / replayed latency) is recorded, the replay taken from the shipped profile's
step costs for exactly the branch lengths the start produced, so question and length
sampling cancel. The two starts of a round differ only by the start; rounds differ by
time as well.

- start-to-start sd = sqrt(mean over pairs of (a - b)^2 / 2)
- drift sd = sqrt(max(0, var(round means) - start sd^2 / 2))

Usage: python benchmarks/drift.py [--rounds 6] [--minutes-between 8] [--questions 16]
Writes benchmarks/results/drift.json and drift.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from engine_runs import RESULTS, machine_description, open_testbed  # noqa: E402

from profilers import ExecutionPlan, get_task  # noqa: E402
from storage import Speculation  # noqa: E402
from tuner.core.calibrate import CALIBRATION_SPLIT  # noqa: E402
from tuner.core.configuration import Configuration  # noqa: E402
from tuner.core.validate import engine_arguments, measure, select_questions  # noqa: E402

SLICES = {
    "tb-large N=8": Configuration("tb-large", 8, None, 0.6),
    "tb-large N=8 + tb-draft gamma=2": Configuration(
        "tb-large", 8, Speculation("draft_model", 2, "tb-draft"), 0.6),
}


def main() -> None:
    args = parse_args()
    workspace = open_testbed(None, RESULTS / "drift.db")
    task = get_task(workspace.spec.task)
    questions = select_questions(task, CALIBRATION_SPLIT, args.questions, 0)
    starts = []
    for round_index in range(args.rounds):
        round_began = time.time()
        for name, config in SLICES.items():
            for repeat in range(2):
                starts.append({"round": round_index, "slice": name, "repeat": repeat,
                               **one_start(workspace, task, questions, config)})
                print(f"round {round_index} {name} start {repeat}: "
                      f"log ratio {starts[-1]['log_ratio']:+.4f}", file=sys.stderr, flush=True)
        if round_index + 1 < args.rounds:
            time.sleep(max(0.0, args.minutes_between * 60 - (time.time() - round_began)))
    result = {"command": " ".join(["python", *sys.argv]),
              "finished_at": datetime.now(UTC).isoformat(),
              "machine": machine_description(), "questions": args.questions,
              "starts": starts, "spreads": spreads(starts)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "drift.md").write_text(markdown(result))
    print(markdown(result))


def one_start(workspace, task, questions, config: Configuration) -> dict:
    """Start an engine, run the requests, and compare with the replayed latency."""
    from profilers.vllm_engine import VllmEngine

    model, speculative = engine_arguments(workspace.profile, config)
    table = workspace.simulator.table(config.model, config.temperature)
    plan = ExecutionPlan(n=config.branches, temperature=config.temperature,
                         max_tokens=table.max_tokens, sampling_seed=0)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    engine = VllmEngine(model, speculative)
    start_s = time.perf_counter() - began
    try:
        report = measure(engine, task, questions, plan)
    finally:
        engine.close()
    replayed = workspace.simulator.replay_latency(
        config, [o.prompt_tokens for o in report.outcomes],
        [list(o.branch_tokens) for o in report.outcomes])
    measured = np.array([o.latency_s for o in report.outcomes])
    return {"at": datetime.now(UTC).isoformat(), "engine_start_s": start_s,
            "log_ratio": float(np.mean(np.log(measured / replayed))),
            "measured_mean_s": float(measured.mean()), "replayed_mean_s": float(replayed.mean()),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def spreads(starts: list[dict]) -> dict:
    """Start-to-start and drift spreads per slice and pooled (sd of log latency)."""
    result = {}
    for name in [*SLICES, "pooled"]:
        chosen = [s for s in starts if name == "pooled" or s["slice"] == name]
        pairs = {}
        for s in chosen:
            pairs.setdefault((s["slice"], s["round"]), []).append(s["log_ratio"])
        full = [v for v in pairs.values() if len(v) == 2]
        start_var = float(np.mean([(a - b) ** 2 / 2 for a, b in full]))
        by_slice: dict[str, list[float]] = {}
        for (slice_name, _), values in sorted(pairs.items()):
            if len(values) == 2:
                by_slice.setdefault(slice_name, []).append(float(np.mean(values)))
        round_var = float(np.mean([np.var(v, ddof=1) for v in by_slice.values()
                                   if len(v) >= 2]))
        result[name] = {"pairs": len(full), "start_sd": math.sqrt(start_var),
                        "drift_sd": math.sqrt(max(0.0, round_var - start_var / 2)),
                        "mean_log_ratio": float(np.mean([s["log_ratio"] for s in chosen]))}
    return result


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = ["# Drift between engine starts and over time (measured)", "",
             f"`{result['command']}` — {result['finished_at']}", "",
             f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores "
             f"({machine['fingerprint']}); {machine['engine']}",
             f"- {result['questions']} seeded train-split requests per start; each start "
             "compared with the latency replayed from the shipped profile for its own branch "
             "lengths", "",
             "| slice | pairs of starts | start-to-start sd | drift sd (over the rounds) "
             "| mean measured/replayed |", "|---|---:|---:|---:|---:|"]
    for name, spread in result["spreads"].items():
        lines.append(f"| {name} | {spread['pairs']} | {spread['start_sd']:.1%} | "
                     f"{spread['drift_sd']:.1%} | {math.exp(spread['mean_log_ratio']):.3f} |")
    lines += ["", "| round | slice | start | at | engine start | measured/replayed | load |",
              "|---:|---|---:|---|---:|---:|---|"]
    for s in result["starts"]:
        lines.append(f"| {s['round']} | {s['slice']} | {s['repeat']} | {s['at'][11:19]} | "
                     f"{s['engine_start_s']:.0f} s | {math.exp(s['log_ratio']):.3f} | "
                     f"{s['load_before']:.1f} -> {s['load_after']:.1f} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--minutes-between", type=float, default=8.0)
    parser.add_argument("--questions", type=int, default=16)
    return parser.parse_args()


if __name__ == "__main__":
    main()

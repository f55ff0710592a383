"""Do picks hold on a machine other than the profiled one? (issue 13, must-show 1)

Follows the README quick start on this machine with the shipped profile: `latts-tune run`
(which says where the step costs come from), then `latts-tune calibrate --budget 3m`; then,
for deadlines across the feasible range, picks with the margin (confidence 0.9) the joint
configuration and the three one-knob baselines of paper_claim, and runs each pick on the
real engine over `--questions` validation questions. A pick holds when its measured p90
meets the deadline. The accuracy given up for the margin is the predicted accuracy of the
pick made without a margin (confidence 0.5) minus that of the pick made with it.

Run it on a machine whose fingerprint differs from the shipped profile's. On a machine of
the profiled type, `taskset -c 0 python benchmarks/deadline_hold.py` makes a different one
(one core instead of two: a different fingerprint and about half the speed).

Usage: [taskset -c 0] python benchmarks/deadline_hold.py [--questions 100] [--deadlines 6]
       [--budget 3m] [--db PATH]
Writes benchmarks/results/deadline_hold.json and deadline_hold.md.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from engine_runs import REPO, RESULTS, machine_description, measure_all  # noqa: E402
from paper_claim import best  # noqa: E402 (the tuner's rank rule, one place)

from storage import Database  # noqa: E402
from tuner.core.configuration import LatencyObjective  # noqa: E402
from tuner.core.durations import format_duration  # noqa: E402
from tuner.core.machine import describe  # noqa: E402
from tuner.core.operations import open_workspace  # noqa: E402
from tuner.core.ranking import feasible_range_s, meets  # noqa: E402
from tuner.core.spec import load_spec  # noqa: E402

STRATEGIES = {
    "joint (latts-tune)": lambda c: True,
    "1 branch, no spec": lambda c: c.branches == 1 and c.speculation is None,
    "branches only": lambda c: c.speculation is None,
    "spec only, 1 branch": lambda c: c.branches == 1 and c.speculation is not None,
}
WITH_MARGIN = LatencyObjective("quantile", 0.9, confidence=0.9)
NO_MARGIN = LatencyObjective("quantile", 0.9, confidence=0.5)
CLI = [sys.executable, "-c", "from tuner.cli import main; main()"]


def main() -> None:
    args = parse_args()
    db_path = Path(args.db)
    if not args.skip_calibration:
        db_path.unlink(missing_ok=True)  # the quick start begins with a fresh database
    steps = quick_start(db_path, args.budget, args.skip_calibration)
    with Database(f"sqlite:///{db_path}") as db:
        workspace = open_workspace(db, load_spec(None))
    configs = workspace.space.configurations()
    margin = [workspace.simulator.score(c, WITH_MARGIN) for c in configs]
    plain = [workspace.simulator.score(c, NO_MARGIN) for c in configs]
    deadlines_s = spanning(margin, args.deadlines)
    picks = {(d, name): (best(margin, d, rule), best(plain, d, rule))
             for d in deadlines_s for name, rule in STRATEGIES.items()}
    chosen = [m.configuration for m, _ in picks.values() if m is not None]
    cache = RESULTS / f"deadline_hold_{machine_description()['fingerprint']}.jsonl"
    measured = measure_all(workspace, chosen, args.questions, cache_path=cache)
    rows = [row(d, name, *picks[(d, name)], measured) for d in deadlines_s
            for name in STRATEGIES]
    result = {"command": " ".join(["python", *sys.argv]),
              "finished_at": datetime.now(UTC).isoformat(),
              "machine": machine_description(),
              "profiled_on": describe(workspace.source.costs),
              "tuned_for": workspace.source.title(), "note": workspace.source.note(),
              "quick_start": steps, "questions": args.questions, "rows": rows,
              "summary": summary(rows)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deadline_hold.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "deadline_hold.md").write_text(markdown(result))
    print(markdown(result))


def quick_start(db_path: Path, budget: str, skip_calibration: bool) -> list[dict]:
    """The README's commands on a fresh database: run (first line: the costs' machine),
    then calibrate; each timed and its first line kept."""
    commands = [["run", "--deadline", "150ms"]]
    if not skip_calibration:
        commands.append(["calibrate", "--budget", budget])
    steps = []
    for command in commands:
        began = time.perf_counter()
        done = subprocess.run([*CLI, "-q", "--storage", f"sqlite:///{db_path}", *command],
                              cwd=REPO, capture_output=True, text=True, check=True)
        steps.append({"command": "latts-tune " + " ".join(command),
                      "seconds": time.perf_counter() - began,
                      "first_line": (done.stdout.splitlines() or [""])[0]})
        print(f"{steps[-1]['command']}: {steps[-1]['seconds']:.0f} s; "
              f"{steps[-1]['first_line']}", file=sys.stderr, flush=True)
    return steps


def spanning(scored, count: int) -> list[float]:
    """`count` deadlines from just above the fastest bound to where accuracy saturates."""
    fastest_s, saturated_s = feasible_range_s(scored)
    low, high = math.log(fastest_s * 1.05), math.log(saturated_s)
    return [float(f"{math.exp(low + (high - low) * i / (count - 1)):.3g}")
            for i in range(count)]


def row(deadline_s: float, strategy: str, with_margin, without, measured: dict) -> dict:
    base = {"deadline_s": deadline_s, "strategy": strategy}
    if with_margin is None:
        return {**base, "configuration": None}
    run = measured[with_margin.configuration]["measured"]
    return {**base, "configuration": with_margin.configuration.label(),
            "predicted_accuracy": with_margin.accuracy,
            "predicted_p90_s": with_margin.latency_s,
            "predicted_bound_s": with_margin.latency_upper_s,
            "no_margin_configuration": without.configuration.label() if without else None,
            "no_margin_accuracy": without.accuracy if without else None,
            "measured_accuracy": run["accuracy"],
            "measured_p90_s": run["p90_latency_s"],
            "meets": meets(run["p90_latency_s"], deadline_s)}


def summary(rows: list[dict]) -> dict:
    measured = [r for r in rows if r["configuration"] is not None]
    given_up = [100 * (r["no_margin_accuracy"] - r["predicted_accuracy"]) for r in measured
                if r["no_margin_accuracy"] is not None]
    return {"picks": len(measured), "met": sum(r["meets"] for r in measured),
            "accuracy_given_up_median_points": float(np.median(given_up)) if given_up else 0.0,
            "accuracy_given_up_max_points": float(max(given_up, default=0.0)),
            "overshoot": [r["measured_p90_s"] / r["deadline_s"] - 1 for r in measured
                          if not r["meets"]]}


def markdown(result: dict) -> str:
    machine, s = result["machine"], result["summary"]
    lines = ["# Do picks hold on another machine? (measured)", "",
             f"`{result['command']}` — {result['finished_at']}", "",
             f"- profile measured on: {result['profiled_on']}",
             f"- this machine: {machine['cpu_model']}, {machine['cpu_cores']} cores "
             f"({machine['fingerprint']}); {machine['engine']}; load average at the end "
             f"{', '.join(f'{x:.2f}' for x in machine['load_average'])}",
             f"- picks at confidence 0.9 (the margin), p90 latency; {result['questions']} "
             "validation questions each, one request at a time", "",
             "Quick start on a fresh database:", ""]
    for step in result["quick_start"]:
        lines.append(f"- `{step['command']}` ({step['seconds']:.0f} s): {step['first_line']}")
    lines += ["", f"deadline met: {s['met']} of {s['picks']}",
              f"accuracy given up vs no margin: median {s['accuracy_given_up_median_points']:.1f}"
              f" points (largest {s['accuracy_given_up_max_points']:.1f})", "",
              "| deadline | strategy | pick | predicted acc | p90 pred | bound | measured p90 "
              "| measured acc | met | pick without margin (acc) |",
              "|---:|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in result["rows"]:
        deadline = format_duration(r["deadline_s"])
        if r["configuration"] is None:
            lines.append(f"| {deadline} | {r['strategy']} | nothing feasible | | | | | | | |")
            continue
        lines.append(
            f"| {deadline} | {r['strategy']} | {r['configuration']} | "
            f"{r['predicted_accuracy']:.3f} | {format_duration(r['predicted_p90_s'])} | "
            f"{format_duration(r['predicted_bound_s'])} | {format_duration(r['measured_p90_s'])}"
            f" | {r['measured_accuracy']:.3f} | {'yes' if r['meets'] else 'NO'} | "
            f"{r['no_margin_configuration']} ({r['no_margin_accuracy']:.3f}) |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--deadlines", type=int, default=6)
    parser.add_argument("--budget", default="3m")
    parser.add_argument("--db", default=str(RESULTS / "deadline_hold.db"))
    parser.add_argument("--skip-calibration", action="store_true",
                        help="reuse the calibration already in --db")
    return parser.parse_args()


if __name__ == "__main__":
    main()

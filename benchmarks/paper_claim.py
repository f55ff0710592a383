"""The paper's claim on our engine: joint branch + speculative scaling beats either alone.

For 3 deadlines spanning the testbed's range, pick with the simulator (shipped profile)
and then MEASURE on the real engine (validation questions, executor) the accuracy of:
(a) one branch, no speculative decoding: the best model meeting the deadline;
(b) branches only (no speculative decoding); (c) speculative decoding only, one branch;
(d) latts-tune's joint optimum. Writes benchmarks/results/paper_claim.json and .md.

Usage: python benchmarks/paper_claim.py [--questions 200] [--deadlines 0.3s,0.8s,2s]
           [--db PATH (e.g. a calibrated one)] [--cache PATH (measurements of this machine)]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_runs import CACHE, RESULTS, machine_description, measure_all, open_testbed  # noqa: E402

from tuner.core.configuration import LatencyObjective  # noqa: E402
from tuner.core.durations import format_duration, parse_duration  # noqa: E402
from tuner.core.ranking import feasible_range_s, meets, rank  # noqa: E402
from tuner.core.simulator import SimulationResult  # noqa: E402

STRATEGIES = {
    "(a) 1 branch, no spec": lambda c: c.branches == 1 and c.speculation is None,
    "(b) branches only": lambda c: c.speculation is None,
    "(c) spec only, 1 branch": lambda c: c.branches == 1 and c.speculation is not None,
    "(d) joint (latts-tune)": lambda c: True,
}


def main() -> None:
    args = parse_args()
    workspace = open_testbed(args.spec, Path(args.db))
    # p90 latency with the margin; at confidence P a pick meets with probability P, so for
    # all of k picks to meet with probability 0.9 each needs about 0.9 ** (1 / k)
    objective = LatencyObjective("quantile", 0.9, confidence=args.confidence)
    scored = [workspace.simulator.score(c, objective) for c in workspace.space.configurations()]
    deadlines_s = args.deadlines or spanning_deadlines(scored)
    picks = {(d, name): best(scored, d, rule) for d in deadlines_s
             for name, rule in STRATEGIES.items()}
    configs = [p.configuration for p in picks.values() if p is not None]
    measured = measure_all(workspace, configs, args.questions, cache_path=Path(args.cache))
    rows = [row_of(d, name, picks[(d, name)], measured) for d in deadlines_s
            for name in STRATEGIES]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": machine_description(), "questions": args.questions,
        "tuned_for": workspace.source.title(), "cost_note": workspace.source.note(),
        "split": "validation", "latency_statistic": "p90", "confidence": args.confidence,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "paper_claim.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "paper_claim.md").write_text(markdown(result))
    print(markdown(result))


def spanning_deadlines(scored: list[SimulationResult]) -> list[float]:
    """From just above the fastest configuration to where accuracy stops rising (log),
    by the latency bound that feasibility compares with the deadline."""
    fastest_s, saturated_s = feasible_range_s(scored)
    low, high = math.log(fastest_s * 1.2), math.log(saturated_s)
    return [float(f"{math.exp(low + (high - low) * f):.2g}") for f in (0.0, 0.45, 0.9)]


def best(scored: list[SimulationResult], deadline_s: float, rule) -> SimulationResult | None:
    """The best pick of a strategy by the tuner's own rank rule (bound within deadline)."""
    ranked = rank((r for r in scored if rule(r.configuration)),
                  lambda r: meets(r.latency_upper_s, deadline_s))
    return ranked[0] if ranked else None


def row_of(deadline_s: float, strategy: str, pick: SimulationResult | None,
           measured: dict) -> dict:
    row = {"deadline_s": deadline_s, "strategy": strategy}
    if pick is None:
        return {**row, "configuration": None}
    run = measured[pick.configuration]["measured"]
    return {
        **row, "configuration": pick.configuration.label(),
        "predicted_accuracy": pick.accuracy, "predicted_p90_s": pick.latency_s,
        "predicted_bound_s": pick.latency_upper_s,
        "measured_accuracy": run["accuracy"],
        "measured_interval": [run["accuracy_low"], run["accuracy_high"]],
        "measured_p90_s": run["p90_latency_s"],
        "meets_deadline_measured": meets(run["p90_latency_s"], deadline_s),
    }


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        "# The paper's claim on our engine (measured)", "",
        f"`{result['command']}` — {result['finished_at']}", "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores; {machine['engine']}",
        f"- {machine['note']}",
        f"- tuned for: {result.get('tuned_for', 'the shipped profile')}",
        f"- each configuration chosen by the simulator (p90 latency, feasible "
        f"when its bound at confidence {result.get('confidence', 0.9)} meets the deadline), "
        "then run on the real engine "
        f"over {result['questions']} {result['split']} questions",
        "",
        "| deadline (p90) | strategy | configuration | predicted acc | measured acc (95% CI) "
        "| predicted p90 | bound | measured p90 | meets |",
        "|---:|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        deadline = format_duration(r["deadline_s"])
        if r["configuration"] is None:
            lines.append(f"| {deadline} | {r['strategy']} | nothing feasible | | | | | | |")
            continue
        low, high = r["measured_interval"]
        lines.append(
            f"| {deadline} | {r['strategy']} | {r['configuration']} "
            f"| {r['predicted_accuracy']:.3f} | {r['measured_accuracy']:.3f} "
            f"({low:.3f}-{high:.3f}) | {r['predicted_p90_s']:.3f} s "
            f"| {r.get('predicted_bound_s', r['predicted_p90_s']):.3f} s "
            f"| {r['measured_p90_s']:.3f} s | {'yes' if r['meets_deadline_measured'] else 'no'} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--spec", default=None)
    parser.add_argument("--db", default=str(RESULTS / "benchmarks.db"),
                        help="database (a calibrated one corrects the costs)")
    parser.add_argument("--cache", default=str(CACHE),
                        help="measurements file; one per machine and day of its speed")
    parser.add_argument("--confidence", type=float, default=0.9,
                        help="the margin's confidence (run's --confidence; default 0.9)")
    parser.add_argument("--deadlines", default=None,
                        type=lambda text: [parse_duration(part) for part in text.split(",")])
    return parser.parse_args()


if __name__ == "__main__":
    main()

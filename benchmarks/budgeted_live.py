"""Budgeted decode profiling live on the engine: half the full grid's time, same error?

For each chosen testbed slice, one engine measures the full grid (`profile_decode`, timed)
and then runs the planner (`profile_decode_budgeted`) with half of that measuring time as
its budget, each into its own fresh database. Both fits (the tuner's cost model) are scored
against the per-point mean of the stored independent measurements (the shipped profile and
`benchmarks/results/testbed_decode_remeasured_*.json.gz`), which neither run saw, and the
budgeted fit also against the live full grid. Unlike `budgeted_profiling.py` nothing is
simulated: the budget is wall-clock and the engine decides what each point costs.

Writes benchmarks/results/budgeted_live.json and .md. Run on a quiet machine (other CPU
work shifts the timings); about 5 minutes for the default slices on a 2-core machine.

Usage: python benchmarks/budgeted_live.py [--slices large,large+2,medium,small+1 | all]
       (all: the 16 slices of the testbed card, about 12 minutes)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
from budgeted_profiling import (  # noqa: E402
    DEFAULT_MEASUREMENTS,
    TOLERANCE_ABSOLUTE,
    TOLERANCE_RELATIVE,
    full_grid_slices,
    mean_of,
    stored_points,
)

from profilers.decode import profile_decode  # noqa: E402
from profilers.engine import SpeculativeConfig  # noqa: E402
from profilers.planner import profile_decode_budgeted  # noqa: E402
from profilers.testbed.card import TestbedSettings  # noqa: E402
from profilers.testbed.family import model_dir  # noqa: E402
from storage import Database, ProfileStore  # noqa: E402
from tuner.cost_model import CostKey, StepCostModel, unbounded_step_cost  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_SLICES = "large,large+2,medium,small+1"
ALL_SLICES = ",".join(["draft", "small", "medium", "large"] + [
    f"{target}+{gamma}" for target in ("small", "medium", "large") for gamma in (1, 2, 3, 4)])


def parse_slice(text: str) -> tuple[str, int]:
    """'large+2' -> ('tb-large', 2): the target and gamma (0: no draft)."""
    name, _, gamma = text.partition("+")
    return f"tb-{name}", int(gamma or 0)


def decode_fit(store: ProfileStore, key: CostKey) -> tuple[StepCostModel, dict]:
    """The cost model on the store's decode points of `key`, and those points' medians."""
    points = {(p.batch_size, p.context_tokens): p.seconds_median
              for p in store.load_profile_set().cost_points
              if p.phase == "decode" and p.status == "ok"
              and (p.model, p.draft, p.gamma if p.draft else 0) == (key.model, key.draft,
                                                                    key.gamma)}
    X = np.array(sorted(points), dtype=float)
    model = StepCostModel().fit(X, np.array([points[p] for p in sorted(points)]))
    return model, points


def error(model: StepCostModel, target: dict) -> float:
    X = np.array(sorted(target), dtype=float)
    y = np.array([target[p] for p in sorted(target)])
    return float(np.mean(np.abs(model.predict(X) - y) / y))


def measure_slice(target: str, gamma: int, references: dict, folder: Path) -> dict:
    from profilers.vllm_engine import VllmEngine

    settings = TestbedSettings()
    speculative = SpeculativeConfig(str(model_dir("tb-draft")), gamma) if gamma else None
    key = CostKey(target, "tb-draft" if gamma else None, gamma, "decode")
    full_store = ProfileStore(Database(f"sqlite:///{folder}/{target}-{gamma}-full.db"))
    budget_store = ProfileStore(Database(f"sqlite:///{folder}/{target}-{gamma}-budget.db"))
    engine = VllmEngine(str(model_dir(target)), speculative,
                        max_model_len=settings.max_model_len)
    try:
        started = time.perf_counter()
        profile_decode(engine, full_store, settings.grid)
        full_s = time.perf_counter() - started
        report = profile_decode_budgeted(engine, budget_store, settings.grid, 0.5 * full_s,
                                         unbounded_step_cost)
    finally:
        engine.close()
    full_model, full_points = decode_fit(full_store, key)
    budget_model, budget_points = decode_fit(budget_store, key)
    reference = mean_of(references[key])
    full_error, budget_error = error(full_model, reference), error(budget_model, reference)
    return {
        "slice": key.label(), "grid_points": len(full_points),
        "budget_points": len(budget_points), "full_s": full_s,
        "budget_s": report.elapsed_s, "stop_reason": report.stop_reason,
        "chosen": [(m.batch_size, m.prompt_tokens) for m in report.points],
        "full_error": full_error, "budget_error": budget_error,
        "meets": budget_error <= max(full_error * (1 + TOLERANCE_RELATIVE),
                                     full_error + TOLERANCE_ABSOLUTE),
        "full_in_sample_error": error(full_model, full_points),
        "budget_error_on_live_full_grid": error(budget_model, full_points),
    }


def write_results(rows: list[dict], sources: list[str]) -> None:
    payload = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
               "command": " ".join(sys.argv), "references": sources, "slices": rows}
    (RESULTS / "budgeted_live.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Budgeted decode profiling, live on the engine", "",
        f"Command: `{payload['command']}` ({payload['when']})", "",
        "Per slice, one engine measured the full grid, then the planner ran with half of "
        "that measuring time as its budget. Errors: mean relative error of the tuner's cost "
        "model against the per-point mean of the stored independent measurements "
        "(" + ", ".join(f"`{source}`" for source in sources) + "), which neither run saw.",
        "",
        "| slice | full grid: points, time | budgeted: points, time (stop) | full-grid fit | "
        "budgeted fit | meets | budgeted fit on the live full grid (full grid's own "
        "in-sample) |",
        "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['slice']} | {row['grid_points']}, {row['full_s']:.1f} s | "
            f"{row['budget_points']}, {row['budget_s']:.1f} s ({row['stop_reason']}) | "
            f"{row['full_error']:.1%} | {row['budget_error']:.1%} | "
            f"{'yes' if row['meets'] else 'NO'} | "
            f"{row['budget_error_on_live_full_grid']:.1%} ({row['full_in_sample_error']:.1%}) |")
    full = float(np.mean([row["full_error"] for row in rows]))
    budget = float(np.mean([row["budget_error"] for row in rows]))
    lines += ["", f"Mean over the slices: full grid {full:.2%}, budgeted {budget:.2%}; "
              f"{sum(row['meets'] for row in rows)} of {len(rows)} slices meet the criterion "
              f"(budgeted error <= full-grid error x {1 + TOLERANCE_RELATIVE:g} or + "
              f"{TOLERANCE_ABSOLUTE:.1%} points)."]
    (RESULTS / "budgeted_live.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", default=DEFAULT_SLICES,
                        help="comma-separated target[+gamma], e.g. large,large+2, or all")
    args = parser.parse_args()
    references: dict[CostKey, list] = {}
    for source in DEFAULT_MEASUREMENTS:
        for piece in full_grid_slices(stored_points(str(source))):
            references.setdefault(piece.key, []).append(piece)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for text in (ALL_SLICES if args.slices == "all" else args.slices).split(","):
            target, gamma = parse_slice(text.strip())
            rows.append(measure_slice(target, gamma, references, Path(folder)))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "chosen"}))
    write_results(rows, [str(Path(s).relative_to(REPO)) for s in DEFAULT_MEASUREMENTS])
    print((RESULTS / "budgeted_live.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

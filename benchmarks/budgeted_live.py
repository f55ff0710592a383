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
    meets_criterion,
    relative_error,
    stored_profile,
)

from profilers import EnginePool  # noqa: E402
from profilers.decode import profile_decode  # noqa: E402
from profilers.planner import profile_decode_budgeted  # noqa: E402
from profilers.testbed.card import (  # noqa: E402
    EngineConfiguration,
    TestbedSettings,
    engine_configurations,
)
from storage import Database, ProfileStore, Speculation  # noqa: E402
from tuner.core.cost_model import (  # noqa: E402
    CostKey,
    cost_points_by_key,
    fit_cost_model,
    unbounded_step_cost,
)

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_SLICES = "large,large+2,medium,small+1"


def parse_slices(text: str) -> list[EngineConfiguration]:
    """'large,large+2': tb-large alone, then with tb-draft at gamma 2; 'all': every engine
    configuration the testbed card measures."""
    if text == "all":
        return engine_configurations(TestbedSettings())
    configs = []
    for part in text.split(","):
        name, _, gamma = part.strip().partition("+")
        configs.append(EngineConfiguration(
            f"tb-{name}", Speculation("draft_model", int(gamma), "tb-draft") if gamma else None))
    return configs


def measure_slice(config: EngineConfiguration, references: dict, folder: Path) -> dict:
    from profilers.vllm_engine import VllmEngine

    settings = TestbedSettings()
    key = CostKey(config.model, config.speculation, "decode")
    with Database(f"sqlite:///{folder}/{config.model}-{config.gamma}-full.db") as full_db, \
            Database(f"sqlite:///{folder}/{config.model}-{config.gamma}-budget.db") as budget_db, \
            EnginePool(lambda model, speculative: VllmEngine(
                model, speculative, max_model_len=settings.max_model_len)) as pool:
        engine = config.start(pool)
        started = time.perf_counter()
        profile_decode(engine, ProfileStore(full_db), settings.grid)
        full_s = time.perf_counter() - started
        report = profile_decode_budgeted(engine, ProfileStore(budget_db), settings.grid,
                                         0.5 * full_s, unbounded_step_cost)
        full_points = decode_points(ProfileStore(full_db), key)
        budget_points = decode_points(ProfileStore(budget_db), key)
    full_model = fit_cost_model(key, full_points)
    budget_model = fit_cost_model(key, budget_points)
    reference = mean_of(references[key])
    measured = {(p.batch_size, p.context_tokens): p.seconds_median for p in full_points}
    full_error = relative_error(full_model, reference)
    budget_error = relative_error(budget_model, reference)
    return {
        "slice": key.label(), "grid_points": len(full_points),
        "budget_points": len(budget_points), "full_s": full_s,
        "budget_s": report.elapsed_s, "stop_reason": report.stop_reason,
        "chosen": [(m.batch_size, m.prompt_tokens) for m in report.points],
        "full_error": full_error, "budget_error": budget_error,
        "meets": meets_criterion(budget_error, full_error),
        "full_in_sample_error": relative_error(full_model, measured),
        "budget_error_on_live_full_grid": relative_error(budget_model, measured),
    }


def decode_points(store: ProfileStore, key: CostKey) -> list:
    return cost_points_by_key(store.load_profile_set())[key]


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
        for piece in full_grid_slices(stored_profile(str(source))):
            references.setdefault(piece.key, []).append(piece)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for config in parse_slices(args.slices):
            rows.append(measure_slice(config, references, Path(folder)))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "chosen"}))
    write_results(rows, [str(Path(s).relative_to(REPO)) for s in DEFAULT_MEASUREMENTS])
    print((RESULTS / "budgeted_live.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How reproducible is a decode profile: within one engine vs across engine starts?

Three full measurements of the same testbed decode grid differ by 3-15% (full-grid fits,
`budgeted_profiling.md`), more than a point's repeats spread. This separates the two
sources: for each slice, START engines are started one after the other, and each measures
the full grid twice in a row (`profile_decode`, each pass into its own fresh database). The
fitted cost models are compared pairwise: two passes of one engine (drift over ~10 s plus
noise) against passes of different engines (plus whatever differs between engine starts).

Appends to benchmarks/results/engine_reproducibility.json and rewrites the .md. Run on
a quiet machine; about 5 minutes for the default slices on a 2-core machine.

Usage: python benchmarks/engine_reproducibility.py [--slices large,small+2] [--starts 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from budgeted_live import decode_points, parse_slices  # noqa: E402
from budgeted_profiling import fits_differ  # noqa: E402

from profilers import EnginePool  # noqa: E402
from profilers.decode import profile_decode  # noqa: E402
from profilers.testbed.card import EngineConfiguration, TestbedSettings  # noqa: E402
from storage import Database, ProfileStore  # noqa: E402
from tuner.core.cost_model import CostKey, fit_cost_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def measure_slice(config: EngineConfiguration, starts: int, folder: Path) -> dict:
    from profilers.vllm_engine import VllmEngine

    settings = TestbedSettings()
    key = CostKey(config.model, config.speculation, "decode")
    fits = {}  # (start, pass) -> fitted cost model
    for start in range(starts):
        with EnginePool(lambda model, speculative: VllmEngine(
                model, speculative, max_model_len=settings.max_model_len)) as pool:
            engine = config.start(pool)  # a new pool per start: a fresh engine
            for run in range(2):
                with Database(f"sqlite:///{folder}/{config.model}-{config.gamma}-{start}-"
                              f"{run}.db") as db:
                    profile_decode(engine, ProfileStore(db), settings.grid)
                    fits[(start, run)] = fit_cost_model(key, decode_points(ProfileStore(db),
                                                                           key))
    grid = [(b, settings.grid.context_tokens(p)) for b in settings.grid.batch_sizes
            for p in settings.grid.prompt_tokens]
    within = [fits_differ(fits[(s, 1)], fits[(s, 0)], grid) for s in range(starts)]
    across = [fits_differ(fits[a], fits[b], grid)
              for a, b in itertools.combinations(sorted(fits), 2) if a[0] != b[0]]
    # each engine's overall speed: mean predicted step over the grid and both passes
    level = [statistics.mean(float(fits[(s, r)].predict(grid).mean()) for r in range(2))
             for s in range(starts)]
    return {"slice": key.label(), "starts": starts, "within_engine": within,
            "across_engines": across, "engine_level": [x / level[0] for x in level],
            "engine_mean_step_ms": [1e3 * x for x in level]}


def write_results(rows: list[dict]) -> None:
    """Append this run to the JSON history (runs at different times show the drift) and
    rewrite the table from every recorded run."""
    history_path = RESULTS / "engine_reproducibility.json"
    history = json.loads(history_path.read_text())["runs"] if history_path.exists() else []
    history.append({"when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv), "slices": rows})
    history_path.write_text(json.dumps({"runs": history}, indent=2) + "\n")
    lines = [
        "# Decode profile reproducibility: within one engine vs across engine starts", "",
        "Mean relative difference of two full-grid cost-model fits over the grid. Within: "
        "two passes of the grid in a row on one engine. Across: passes on different engine "
        "starts. Engine speed: each start's mean predicted step cost over the grid, in ms "
        "and relative to the first start.", "",
        "| run | slice | within one engine (per start) | across engine starts: median (max) "
        "| engine speed: mean step ms (vs start 1) |", "|---|---|---|---|---|"]
    for run in history:
        for row in run["slices"]:
            lines.append(
                f"| `{run['command']}` ({run['when']}) | {row['slice']} | "
                + ", ".join(f"{x:.1%}" for x in row["within_engine"])
                + f" | {statistics.median(row['across_engines']):.1%} "
                  f"({max(row['across_engines']):.1%}) | "
                + ", ".join(f"{ms:.2f} ({x:.3f})" for ms, x in zip(
                    row["engine_mean_step_ms"], row["engine_level"], strict=True)) + " |")
    (RESULTS / "engine_reproducibility.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", default="large,small+2")
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for config in parse_slices(args.slices):
            rows.append(measure_slice(config, args.starts, Path(folder)))
            print(json.dumps(rows[-1]))
    write_results(rows)
    print((RESULTS / "engine_reproducibility.md").read_text())
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the study find the simulator's optimum, and how long does `latts-tune run` take?

For 20 deadlines spanning the profile's range of latency statistics, compare the study's
best trial with a brute-force optimum computed by a separate Simulator, then time
`latts-tune run` as a whole process (cold: empty database, profile imported; new: profile
stored, new study; reuse: same study again). Writes benchmarks/results/tuner_optimum.json
and .md with the machine description and an example frontier table.

Usage: python benchmarks/tuner_optimum.py [--spec studies/testbed.yaml] [--deadlines 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from storage import Database  # noqa: E402
from tuner.core.configuration import LatencyObjective  # noqa: E402
from tuner.core.durations import format_duration  # noqa: E402
from tuner.core.frontier import exhaustive_optimum, frontier  # noqa: E402
from tuner.core.operations import open_workspace  # noqa: E402
from tuner.core.ranking import NoFeasibleConfiguration  # noqa: E402
from tuner.core.simulator import Simulator  # noqa: E402
from tuner.core.spec import DEFAULT_SPEC_PATH, load_spec  # noqa: E402
from tuner.core.study import StudySettings, run_study  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    args = parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(args.spec)
    latency = LatencyObjective(spec.latency.statistic, spec.latency.quantile, spec.cutoff)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        with Database(url) as db:
            workspace = open_workspace(db, spec)
        deadlines_s = spanning_deadlines(workspace, latency, args.deadlines)
        comparisons = compare(url, workspace, latency, deadlines_s)
        timings = time_cli(args.spec, deadlines_s[len(deadlines_s) // 2], args.repeats)
    points = frontier(workspace.space, workspace.simulator,
                      np.linspace(deadlines_s[0], deadlines_s[-1], 10), latency)
    result = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "spec": str(args.spec),
        "profile": {"hardware": workspace.profile.hardware.fingerprint,
                    "engine": workspace.profile.engine_version,
                    "configurations": len(workspace.space)},
        "latency": latency.describe(),
        "matches": sum(c["match"] for c in comparisons),
        "deadlines": len(comparisons),
        "comparisons": comparisons,
        "run_wall_s": timings,
        "cost_models": cost_model_errors(workspace),
        "frontier": [frontier_row(p) for p in points],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tuner_optimum.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "tuner_optimum.md").write_text(markdown(result))
    print(markdown(result))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH)
    parser.add_argument("--deadlines", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case")
    return parser.parse_args()


def spanning_deadlines(workspace, latency: LatencyObjective, count: int) -> list[float]:
    """`count` deadlines from just above the fastest to the slowest latency statistic."""
    stats = [workspace.simulator.score(c, latency).latency_s
             for c in workspace.space.configurations()]
    low, high = min(stats) * 1.01, max(stats)
    return [float(d) for d in np.geomspace(low, high, count)]


def compare(url: str, workspace, latency: LatencyObjective, deadlines_s) -> list[dict]:
    # An independent simulator: nothing cached from the study's scoring is reused.
    reference = Simulator(workspace.profile, workspace.spec.task, split=workspace.spec.split)
    rows = []
    for deadline_s in deadlines_s:
        settings = StudySettings.create(workspace.spec, workspace.profile, deadline_s, latency)
        start = time.perf_counter()
        try:
            best = run_study(url, workspace.space, workspace.simulator, settings).best
        except NoFeasibleConfiguration:
            best = None
        study_s = time.perf_counter() - start
        try:
            optimum = exhaustive_optimum(workspace.space, reference, deadline_s, latency)
        except NoFeasibleConfiguration:
            optimum = None
        rows.append({
            "deadline_s": deadline_s,
            "study": best.configuration.label() if best else None,
            "exhaustive": optimum.configuration.label() if optimum else None,
            "accuracy": best.accuracy if best else None,
            "latency_s": best.latency_s if best else None,
            "match": (best is None and optimum is None) or (
                best is not None and optimum is not None
                and best.configuration == optimum.configuration),
            "study_s": study_s,
        })
    return rows


def time_cli(spec: Path, deadline_s: float, repeats: int) -> dict:
    """Median wall seconds of whole `latts-tune run` processes in three situations."""
    command = cli_command()
    cases: dict[str, list[float]] = {"cold": [], "new_study": [], "reuse": []}
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            url = f"sqlite:///{Path(scratch) / 'cli.db'}"
            deadline = f"{deadline_s * (1 + repeat / 100):.4f}s"
            other = f"{deadline_s * (1.5 + repeat / 100):.4f}s"
            for case, chosen in (("cold", deadline), ("new_study", other),
                                 ("reuse", other)):
                start = time.perf_counter()
                subprocess.run([*command, "--storage", url, "run", "--deadline", chosen,
                                "--spec", str(spec)], check=True, cwd=REPO,
                               stdout=subprocess.DEVNULL, env=cli_env())
                cases[case].append(time.perf_counter() - start)
    return {case: {"median": statistics.median(v), "samples": v} for case, v in cases.items()}


def cli_command() -> list[str]:
    installed = shutil.which("latts-tune")
    return [installed] if installed else [sys.executable, "-c",
                                          "from tuner.cli import main; main()"]


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def cost_model_errors(workspace) -> list[dict]:
    simulator = workspace.simulator
    rows = []
    for model, draft, gamma, phase in sorted(
        {(p.model, p.speculation, p.phase)
         for p in workspace.profile.cost_points if p.status == "ok"},
        key=lambda key: (key[0], key[1] or "", key[2], key[3]),
    ):
        fitted = simulator.cost_model(model, draft, gamma, phase)
        rows.append({"slice": fitted.label, "points": fitted.n_points_,
                     "loo_mean_relative_error": fitted.loo_relative_error_,
                     "loo_max_relative_error": float(np.nanmax(fitted.loo_relative_errors_))})
    return rows


def frontier_row(point) -> dict:
    best = point.best
    return {"deadline_s": point.deadline_s, "changed": point.changed,
            "configuration": best.configuration.label() if best else None,
            "accuracy": best.accuracy if best else None,
            "accuracy_low": best.accuracy_low if best else None,
            "accuracy_high": best.accuracy_high if best else None,
            "latency_s": best.latency_s if best else None}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
            "platform": platform.platform(), "python": platform.python_version(),
            "optuna": optuna.__version__, "numpy": np.__version__}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Tuner benchmark: study optimum vs exhaustive, `latts-tune run` wall time", "",
        f"{result['created']} on {m['cpu']} ({m['cores']} cores, load {m['load_average_1m']:.1f}),"
        f" Python {m['python']}, Optuna {m['optuna']}.",
        f"Spec `{result['spec']}`: {result['profile']['configurations']} configurations, "
        f"{result['latency']}.", "",
        f"**Study best = exhaustive optimum in {result['matches']}/{result['deadlines']} "
        "deadlines.**", "",
        "| `latts-tune run` (whole process) | median wall s | samples |", "|---|---|---|",
    ]
    for case, timing in result["run_wall_s"].items():
        samples = ", ".join(f"{s:.2f}" for s in timing["samples"])
        lines.append(f"| {case} | {timing['median']:.2f} | {samples} |")
    lines += ["", "| deadline | study best | exhaustive | accuracy | latency | match |",
              "|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        accuracy = f"{c['accuracy']:.1%}" if c["accuracy"] is not None else "-"
        latency = format_duration(c["latency_s"]) if c["latency_s"] else "-"
        lines.append(f"| {format_duration(c['deadline_s'])} | {c['study']} | {c['exhaustive']}"
                     f" | {accuracy} | {latency} | {'yes' if c['match'] else 'NO'} |")
    lines += ["", "Example frontier (`latts-tune frontier`):", "",
              "| deadline | accuracy (95% CI) | latency | configuration | |",
              "|---|---|---|---|---|"]
    for p in result["frontier"]:
        if p["configuration"] is None:
            lines.append(f"| {format_duration(p['deadline_s'])} | - | - | nothing meets it | |")
            continue
        lines.append(f"| {format_duration(p['deadline_s'])} | {p['accuracy']:.1%} "
                     f"({p['accuracy_low']:.1%}-{p['accuracy_high']:.1%}) | "
                     f"{format_duration(p['latency_s'])} | {p['configuration']} | "
                     f"{'changed' if p['changed'] else ''} |")
    lines += ["", "Step-cost models, leave-one-out relative error:", "",
              "| slice | points | mean | max |", "|---|---|---|---|"]
    for row in result["cost_models"]:
        lines.append(f"| {row['slice']} | {row['points']} | "
                     f"{row['loo_mean_relative_error']:.1%} | "
                     f"{row['loo_max_relative_error']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""The knobs of issue 14 on the testbed (predicted): the frontier over the old space
(studies/testbed.yaml: draft model, majority vote, profiled budget) against the extended
space (studies/testbed-knobs.yaml: every speculation source, early-stopping votes, token
budgets), and the search at the new size: `latts-tune run` time, whether the study finds
the exhaustive optimum, and how many evaluations Optuna's samplers need to reach it.

Every configuration of both spaces is scored once (no cutoff: scores do not depend on the
deadline); the frontier and the exhaustive optimum per deadline come from those scores.
Sampler runs use the same objective as `latts-tune run` (suggest, score, constrain) with
the scores looked up (the simulator is deterministic, so a lookup returns what scoring
would), so each sampler's trial count is the number of configurations it evaluated.

Usage: python benchmarks/knobs_frontier.py [--deadlines 8] [--trials 1500] [--seeds 3]
Writes benchmarks/results/knobs_frontier.json and .md.
"""

from __future__ import annotations

import argparse
import json
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
from tuner_optimum import machine  # noqa: E402

from storage import Database  # noqa: E402
from tuner.core.configuration import LatencyObjective  # noqa: E402
from tuner.core.operations import open_workspace  # noqa: E402
from tuner.core.ranking import NoFeasibleConfiguration, best_of, meets  # noqa: E402
from tuner.core.spec import load_spec  # noqa: E402
from tuner.core.study import StudySettings, run_study, seed_guesses  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
OLD, NEW = REPO / "studies" / "testbed.yaml", REPO / "studies" / "testbed-knobs.yaml"
LATENCY = LatencyObjective()  # p90, no cutoff, the default confidence


def scored_space(spec_path: Path, url: str):
    """(workspace, every configuration's SimulationResult, seconds per configuration)."""
    with Database(url) as db:
        workspace = open_workspace(db, load_spec(spec_path))
    configs = workspace.space.configurations()
    started_s = time.perf_counter()
    results = [workspace.simulator.score(c, LATENCY) for c in configs]
    return workspace, results, (time.perf_counter() - started_s) / len(configs)


def best_at(results, deadline_s: float):
    try:
        return best_of(results, deadline_s, LATENCY)
    except NoFeasibleConfiguration:
        return None


def row_of(result) -> dict | None:
    if result is None:
        return None
    return {"configuration": result.configuration.label(), "accuracy": result.accuracy,
            "accuracy_interval": [result.accuracy_low, result.accuracy_high],
            "p90_s": result.latency_s, "p90_upper_s": result.latency_upper_s}


def evaluations_to_optimum(workspace, results, deadline_s: float, sampler_name: str,
                           seed: int, trials: int) -> int | None:
    """Trials a sampler (seeded with the corners `run` enqueues) needs until its best
    feasible trial is the exhaustive optimum; None if it never gets there."""
    by_config = {r.configuration: r for r in results}
    optimum = best_at(results, deadline_s)
    space = workspace.space
    found: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        result = by_config[space.suggest(trial)]
        feasible = meets(result.latency_upper_s, deadline_s)
        trial.set_constraint("latency", result.latency_upper_s - deadline_s)
        if feasible and result.configuration == optimum.configuration and not found:
            found.append(trial.number + 1)
        return result.accuracy

    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed)}
    study = optuna.create_study(direction="maximize", sampler=samplers[sampler_name]())
    if sampler_name == "tpe":  # as `latts-tune run` seeds its TPE study
        for config in seed_guesses(space):
            study.enqueue_trial(space.params(config), skip_if_exists=True)
    study.optimize(objective, n_trials=trials,
                   callbacks=[lambda s, t: found and s.stop()])
    return found[0] if found else None


def time_run(spec_path: Path, deadline_s: float) -> dict:
    """Wall time of `latts-tune run` on a fresh database (profile import included), and
    whether its best trial is the exhaustive optimum."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'run.db'}"
        command = [sys.executable, "-c", "from tuner.cli import main; main()",
                   "--storage", url, "run", "--deadline", f"{deadline_s * 1000:.0f}ms",
                   "--spec", str(spec_path), "--json"]
        started_s = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        wall_s = time.perf_counter() - started_s
    if done.returncode != 0:
        return {"wall_s": wall_s, "error": done.stderr.strip().splitlines()[-1:]}
    return {"wall_s": wall_s, "output": json.loads(done.stdout)}


def in_process_study(workspace, deadline_s: float, max_trials: int) -> dict:
    """`run_study` as `latts-tune run` calls it, timed, on an empty in-memory database."""
    settings = StudySettings.create(workspace.spec, workspace.profile, deadline_s, LATENCY)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'study.db'}"
        started_s = time.perf_counter()
        outcome = run_study(url, workspace.space, workspace.simulator, settings,
                            max_trials=max_trials)
        wall_s = time.perf_counter() - started_s
    return {"wall_s": wall_s, "trials": outcome.trials, "exhaustive": outcome.exhaustive,
            "best": outcome.best.configuration.label(), "accuracy": outcome.best.accuracy,
            "configuration": outcome.best.configuration}


def main() -> None:
    args = parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        old_ws, old, old_cost_s = scored_space(OLD, url)
        new_ws, new, new_cost_s = scored_space(NEW, url)
    uppers = np.array([r.latency_upper_s for r in old])
    deadlines_s = np.geomspace(np.quantile(uppers, 0.02), np.quantile(uppers, 0.6),
                               args.deadlines)
    points = []
    for deadline_s in deadlines_s:
        before, after = best_at(old, deadline_s), best_at(new, deadline_s)
        points.append({"deadline_s": float(deadline_s), "old": row_of(before),
                       "extended": row_of(after)})
    search = []
    for deadline_s in deadlines_s[1::max(1, len(deadlines_s) // 3)][:3]:
        optimum = best_at(new, deadline_s)
        runs = {name: [evaluations_to_optimum(new_ws, new, deadline_s, name, seed,
                                              args.trials) for seed in range(args.seeds)]
                for name in ("tpe", "random")}
        study = in_process_study(new_ws, deadline_s, args.trials)
        search.append({
            "deadline_s": float(deadline_s), "optimum": row_of(optimum),
            "evaluations_to_optimum": runs, "exhaustive_evaluations": len(new),
            "run_study": {k: v for k, v in study.items() if k != "configuration"}
            | {"finds_optimum": study["configuration"] == optimum.configuration,
               "optimum_accuracy_reached": study["accuracy"] >= optimum.accuracy},
        })
    run_cli = time_run(NEW, float(deadlines_s[len(deadlines_s) // 2]))
    result = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/knobs_frontier.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "latency": LATENCY.describe(),
        "spaces": {"old": {"spec": str(OLD.relative_to(REPO)), "configurations": len(old),
                           "score_ms_per_configuration": 1e3 * old_cost_s},
                   "extended": {"spec": str(NEW.relative_to(REPO)),
                                "configurations": len(new),
                                "score_ms_per_configuration": 1e3 * new_cost_s,
                                "exhaustive_s": new_cost_s * len(new)}},
        "frontier": points,
        "search": search,
        "latts_tune_run": {"deadline_s": float(deadlines_s[len(deadlines_s) // 2]),
                           "wall_s": run_cli["wall_s"],
                           "best": (run_cli.get("output") or {}).get("best"),
                           "error": run_cli.get("error")},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "knobs_frontier.json").write_text(json.dumps(result, indent=2, default=str)
                                                 + "\n")
    (RESULTS / "knobs_frontier.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    spaces = result["spaces"]
    lines = [
        "# The knobs of issue 14 on the testbed: frontier and search (predicted)", "",
        f"`{result['command']}`, {result['created']}, {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores; 1-minute load "
        f"{result['machine']['load_average_1m']:.1f} at the start: other work shared the "
        "CPU, so seconds are upper bounds).", "",
        f"Latency objective: {result['latency']}. Old space: `{spaces['old']['spec']}`, "
        f"{spaces['old']['configurations']} configurations; extended: "
        f"`{spaces['extended']['spec']}`, {spaces['extended']['configurations']} "
        f"configurations ({spaces['extended']['score_ms_per_configuration']:.0f} ms each to "
        f"score here, {spaces['extended']['exhaustive_s']:.0f} s exhaustively).", "",
        "## Frontier", "",
        "| deadline | old: accuracy | old: configuration | extended: accuracy "
        "| extended: configuration |", "|---:|---:|---|---:|---|"]
    for point in result["frontier"]:
        cells = []
        for key in ("old", "extended"):
            row = point[key]
            cells += (["-", "nothing meets it"] if row is None else
                      [f"{row['accuracy']:.3f}", f"{row['configuration']} "
                       f"(p90 {row['p90_s'] * 1e3:.0f} ms, bound {row['p90_upper_s'] * 1e3:.0f})"])
        lines.append(f"| {point['deadline_s'] * 1e3:.0f} ms | " + " | ".join(cells) + " |")
    lines += ["", "## Search at the new size", "",
              "Evaluations until the sampler's best feasible trial is the exhaustive optimum "
              "(per seed; `-`: not within the trial budget), against scoring every "
              "configuration; and `run_study` as `latts-tune run` calls it.", "",
              "| deadline | optimum | TPE | random | exhaustive | run_study: trials, s, "
              "finds optimum |", "|---:|---|---|---|---:|---|"]
    for entry in result["search"]:
        runs = entry["evaluations_to_optimum"]
        study = entry["run_study"]
        lines.append(
            f"| {entry['deadline_s'] * 1e3:.0f} ms | {entry['optimum']['configuration']} "
            f"({entry['optimum']['accuracy']:.3f}) "
            f"| {', '.join('-' if n is None else str(n) for n in runs['tpe'])} "
            f"| {', '.join('-' if n is None else str(n) for n in runs['random'])} "
            f"| {entry['exhaustive_evaluations']} "
            f"| {study['trials']}, {study['wall_s']:.0f} s, "
            f"{'yes' if study['finds_optimum'] else 'no'} (optimum accuracy "
            f"{'reached' if study['optimum_accuracy_reached'] else 'not reached'}) |")
    run = result["latts_tune_run"]
    lines += ["", f"`latts-tune run --spec studies/testbed-knobs.yaml --deadline "
              f"{run['deadline_s'] * 1e3:.0f}ms` on a fresh database: {run['wall_s']:.0f} s "
              f"wall{'' if not run['error'] else ' (failed: ' + str(run['error']) + ')'}.", ""]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadlines", type=int, default=8)
    parser.add_argument("--trials", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    main()

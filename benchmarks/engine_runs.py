"""Shared by the engine benchmarks: measure configurations on the real engine, with a cache.

Each measured configuration is appended to a JSON-lines cache as soon as it finishes, keyed
by (configuration, questions, split, seed), so an interrupted benchmark loses at most the
configuration in progress and fidelity.py and paper_claim.py share measurements.
Configurations are run grouped by engine (model, draft, gamma): one engine start each.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from profilers import ExecutionPlan, describe_local_hardware  # noqa: E402
from storage import Database  # noqa: E402
from tuner.core.configuration import Configuration  # noqa: E402
from tuner.core.operations import Workspace, open_workspace  # noqa: E402
from tuner.core.spec import load_spec  # noqa: E402
from tuner.core.validate import (  # noqa: E402
    Measurement,
    engine_arguments,
    measure,
    predict,
    select_questions,
)

RESULTS = REPO / "benchmarks" / "results"
CACHE = RESULTS / "engine_measurements.jsonl"
logger = logging.getLogger("benchmarks")


def open_testbed(spec_path: str | None, db_path: Path) -> Workspace:
    """The testbed workspace (shipped profile imported into `db_path` when missing)."""
    with Database(f"sqlite:///{db_path}") as db:
        return open_workspace(db, load_spec(spec_path))


def cache_key(config: Configuration, questions: int, split: str, seed: int) -> str:
    return f"{config.label()}|{questions}|{split}|{seed}"


def load_cache(cache: Path = CACHE) -> dict[str, dict]:
    if not cache.exists():
        return {}
    rows = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows}


def measure_all(workspace: Workspace, configs: Iterable[Configuration], questions: int,
                split: str = "validation",
                seeds: Mapping[Configuration, int] | None = None,
                cache_path: Path = CACHE,
                max_model_len: int | None = None) -> dict[Configuration, dict]:
    """Measured figures of every configuration (cached ones are not run again).

    `seeds[config]` picks the disjoint slice of the split a configuration runs on (default
    0: every configuration on the same questions, a paired comparison). A cache belongs to
    one machine: pass another `cache_path` elsewhere. `max_model_len`: the engine's context
    length (None: the model's own)."""
    from profilers.vllm_engine import VllmEngine

    cache = load_cache(cache_path)
    wanted = list(dict.fromkeys(configs))
    seed_of = {c: (seeds or {}).get(c, 0) for c in wanted}
    key_of = {c: cache_key(c, questions, split, seed_of[c]) for c in wanted}
    missing = [c for c in wanted if key_of[c] not in cache]
    task = workspace.task()
    for engine_key in dict.fromkeys(c.engine_key() for c in missing):
        group = [c for c in missing if c.engine_key() == engine_key]
        model, speculative = engine_arguments(workspace.profile, group[0])
        started_s = time.perf_counter()
        engine = VllmEngine(model, speculative, max_model_len=max_model_len)
        print(f"engine {engine_key} started in {time.perf_counter() - started_s:.0f} s",
              file=sys.stderr, flush=True)
        try:
            for config in group:
                chosen = select_questions(task, split, questions, seed_of[config])
                row = _measure_one(workspace, engine, task, chosen, config)
                row["key"] = key_of[config]
                with cache_path.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                cache[row["key"]] = row
                print(f"  {config.label()}: accuracy {row['measured']['accuracy']:.3f}, "
                      f"p50 {row['measured']['p50_latency_s']:.3f} s, "
                      f"p90 {row['measured']['p90_latency_s']:.3f} s", file=sys.stderr,
                      flush=True)
        finally:
            engine.close()
    return {c: cache[key_of[c]] for c in wanted}


def _measure_one(workspace: Workspace, engine, task, questions, config: Configuration) -> dict:
    table = workspace.simulator.table(config.model, config.temperature)
    plan = ExecutionPlan(n=config.branches, temperature=config.temperature,
                         max_tokens=table.max_tokens, vote=config.vote)
    load_before = os.getloadavg()[0]
    report = measure(engine, task, questions, plan)
    measured = Measurement.of(report)
    predicted = predict(workspace.simulator, config, questions=len(questions))
    score = workspace.simulator.score(config)
    tokens = [sum(o.branch_tokens) for o in report.outcomes]
    return {
        "configuration": asdict(config),
        "measured": asdict(measured),
        "predicted": asdict(predicted),
        "diagnostics": {
            "measured_mean_generated_tokens": float(np.mean(tokens)),
            "predicted_mean_generated_tokens": score.mean_generated_tokens,
            "measured_mean_longest_branch": float(np.mean(
                [max(o.branch_tokens, default=0) for o in report.outcomes])),
            "predicted_prefill_s": score.prefill_s,
            "predicted_decode_s": score.decode_s,
            "tokens_per_step": score.tokens_per_step,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
        },
        "latencies_s": [o.latency_s for o in report.outcomes],
        "correct": [o.correct for o in report.outcomes],
        "measured_at": datetime.now(UTC).isoformat(),
    }


def machine_description() -> dict:
    """Hardware, engine and software versions, for the results files."""
    from profilers.vllm_engine import engine_version

    hardware = describe_local_hardware()
    return {
        "cpu_model": hardware.cpu_model, "cpu_cores": hardware.cpu_cores,
        "memory_gib": hardware.memory_gib, "fingerprint": hardware.fingerprint,
        "engine": engine_version(), "python": platform.python_version(),
        "platform": platform.platform(), "load_average": os.getloadavg(),
        "note": "2 cores shared with other processes; latency includes their interference",
    }


def relative_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured: > 0 when the prediction is too slow."""
    return (predicted - measured) / measured

"""Does speculative decoding speed up tb-large on this engine as the profile says?

For gamma in 0, 2, 3 (one engine each): (1) the executor's cost per generated token at
N=1 on 60 validation questions (slice 7) after a 10-question warm-up, two rounds, with the
draft's measured acceptance; (2) the decode profiler's own measurement
(`profilers.decode.measure_decode_step`: B requests of a filler prompt, ignore_eos, 32
tokens, engine clock, shortest request window) at B=1 and B=8, greedy as the profiler
sends it and sampled at T=0.6 as the executor sends it. Writes
benchmarks/results/spec_speedup.md and .json.

Usage: python benchmarks/spec_speedup.py
"""

from __future__ import annotations

import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_runs import RESULTS, machine_description  # noqa: E402

from profilers import ExecutionPlan, SpeculativeConfig, execute, get_task  # noqa: E402
from profilers.decode import measure_decode_step  # noqa: E402
from profilers.statistics import P90  # noqa: E402
from profilers.testbed.family import model_dir  # noqa: E402
from tuner.core.validate import select_questions  # noqa: E402

FILLER = [3 + index % 16 for index in range(32)]


def executor_rounds(engine, task, questions) -> list[dict]:
    plan = ExecutionPlan(n=1, temperature=0.6, max_tokens=96)
    execute(engine, task, task.load_questions("train", 10), plan)
    rounds = []
    for _ in range(2):
        report = execute(engine, task, questions, plan)
        tokens = statistics.mean(sum(o.branch_tokens) for o in report.outcomes)
        rounds.append({"mean_latency_ms": report.mean_latency_s * 1000,
                       "p90_latency_ms": report.latency_statistic_s(P90) * 1000,
                       "tokens_per_question": tokens,
                       "ms_per_token": report.mean_latency_s * 1000 / tokens})
    return rounds


def profiler_step_ms(engine, batch: int, temperature: float) -> float:
    step_s, _ = measure_decode_step(engine, batch, FILLER, 32, temperature)
    return step_s * 1000


def measure(gamma: int) -> dict:
    from profilers.vllm_engine import VllmEngine

    task = get_task("arithmetic")
    spec = SpeculativeConfig.draft_model(str(model_dir("tb-draft")), gamma) if gamma else None
    engine = VllmEngine(str(model_dir("tb-large")), spec)
    try:
        before = engine.speculative_counters()
        rounds = executor_rounds(engine, task, select_questions(task, "validation", 60, 7))
        counters = engine.speculative_counters() - before
        acceptance = [a / counters.num_drafts for a in counters.accepted_per_position] \
            if counters.num_drafts else []
        steps = {f"B={b} T={t}": statistics.median(profiler_step_ms(engine, b, t)
                                                    for _ in range(4))
                 for b in (1, 8) for t in (0.0, 0.6)}
    finally:
        engine.close()
    return {"gamma": gamma, "executor": rounds, "acceptance_per_position": acceptance,
            "profiler_step_ms": steps}


def markdown(result: dict) -> str:
    lines = ["# Speculative decoding speed-up on tb-large (measured)", "",
             f"`{result['command']}` — {result['finished_at']}", "",
             f"- machine: {result['machine']['cpu_model']}, {result['machine']['cpu_cores']} "
             f"cores; {result['machine']['engine']}", "",
             "| gamma | executor ms/token (2 rounds) | executor p90 ms | acceptance per position "
             "| profiler-shape ms/step B=1 greedy / sampled | B=8 greedy / sampled |",
             "|---:|---|---|---|---|---|"]
    for row in result["rows"]:
        steps = row["profiler_step_ms"]
        per_token = ", ".join(f"{r['ms_per_token']:.2f}" for r in row["executor"])
        p90 = ", ".join(f"{r['p90_latency_ms']:.0f}" for r in row["executor"])
        acceptance = ", ".join(f"{a:.3f}" for a in row["acceptance_per_position"]) or "-"
        lines.append(
            f"| {row['gamma']} | {per_token} | {p90} | {acceptance} | "
            f"{steps['B=1 T=0.0']:.2f} / {steps['B=1 T=0.6']:.2f} | "
            f"{steps['B=8 T=0.0']:.2f} / {steps['B=8 T=0.6']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = [measure(gamma) for gamma in (0, 2, 3)]
    result = {"command": " ".join(["python", *sys.argv]),
              "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine_description(), "rows": rows}
    (RESULTS / "spec_speedup.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "spec_speedup.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

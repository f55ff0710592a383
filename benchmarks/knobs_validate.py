"""Validate picks that use a new knob on the real engine, and measure early-stopped voting.

picks: for each deadline, `latts-tune run --spec studies/testbed-knobs.yaml` picks a
configuration; the best trial that uses a knob of issue 14 (a speculation other than the
draft model, a vote rule other than majority, or a token budget) is exported
(`latts-tune export`) and run (`latts-tune validate --preset NAME --questions 100`):
measured accuracy inside the predicted interval for 100 questions, measured p90 within the
deadline?

early-stop: per configuration, one engine, the same 100 validation questions with the same
sampling seeds (so every branch is the same) under majority and under each early-stopping
rule: the measured p90 and accuracy of each.

Usage: python benchmarks/knobs_validate.py picks --storage sqlite:///testbed.db
           --deadlines 150ms,250ms,...
       python benchmarks/knobs_validate.py early-stop
Results: benchmarks/results/knobs_validate.json (appended per run) and knobs_validate.md.
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

from tuner_optimum import machine  # noqa: E402

from tuner.core.durations import parse_duration  # noqa: E402
from tuner.core.ranking import meets  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SPEC = REPO / "studies" / "testbed-knobs.yaml"
STOPPING = ("early-majority", "window(k=3)", "adaptive(threshold=0.95)", "first-m(m=4)")
EARLY_CONFIGS = (("tb-large", 8), ("tb-medium", 12), ("tb-small", 16))


def cli(storage: str, *arguments: str) -> str:
    """Run `latts-tune --storage STORAGE ARGUMENTS`; its stdout."""
    command = [sys.executable, "-c", "from tuner.cli import main; main()", "--storage",
               storage, *arguments]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def uses_new_knob(trial: dict) -> bool:
    config = trial["configuration"]
    speculation = config["speculation"]
    return (config["vote"] != "majority" or config["max_tokens"] is not None
            or (speculation is not None and speculation["method"] != "draft_model"))


def pick(storage: str, deadline: str) -> dict:
    """The study's best trial using a new knob (and the best trial overall)."""
    outcome = json.loads(cli(storage, "run", "--deadline", deadline, "--spec", str(SPEC),
                             "--no-feedback", "--top", "200", "--json"))
    ranked = outcome["best"]
    chosen = next((t for t in ranked if uses_new_knob(t)), None)
    return {"study": outcome["study"], "best": ranked[0], "chosen": chosen}


def validate_pick(storage: str, deadline: str) -> dict:
    picked = pick(storage, deadline)
    chosen = picked["chosen"]
    if chosen is None:
        return {"deadline": deadline, **picked, "validation": None}
    with tempfile.TemporaryDirectory() as scratch:
        cli(storage, "export", "--study", picked["study"], "--trial", str(chosen["number"]),
            "--format", "json", "-o", scratch)
    preset = f"{picked['study']}-t{chosen['number']}"
    started_s = time.perf_counter()
    validation = json.loads(cli(storage, "validate", "--preset", preset, "--questions", "100",
                                "--json"))
    return {"deadline": deadline, **picked, "preset": preset, "validation": validation,
            "validate_wall_s": time.perf_counter() - started_s}


def early_stop(questions: int) -> list[dict]:
    """Majority against each stopping rule on the same seeded branches, per configuration."""
    from profilers import ExecutionPlan, get_task
    from profilers.statistics import P90
    from profilers.testbed.card import TestbedSettings
    from profilers.testbed.family import model_dir
    from profilers.vllm_engine import VllmEngine
    from profilers.voting import vote_rule
    from tuner.core.validate import select_questions

    settings = TestbedSettings()
    task = get_task("arithmetic")
    chosen = select_questions(task, "validation", questions, 0)
    rows = []
    for model, branches in EARLY_CONFIGS:
        engine = VllmEngine(str(model_dir(model)), max_model_len=settings.max_model_len)
        try:
            for rule in ("majority", *STOPPING):
                plan = ExecutionPlan(n=branches, temperature=settings.temperature,
                                     max_tokens=settings.max_tokens, sampling_seed=0,
                                     vote=vote_rule(rule))
                from profilers import execute

                execute(engine, task, task.load_questions("train", 2), plan)  # warm-up
                report = execute(engine, task, chosen, plan)
                rows.append({"model": model, "branches": branches, "vote": rule,
                             "accuracy": report.accuracy,
                             "p90_s": report.latency_statistic_s(P90),
                             "mean_s": report.mean_latency_s,
                             "aborted_branches": report.aborted_branches,
                             "answers": [o.answer for o in report.outcomes]})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "answers"}))
        finally:
            engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["picks", "early-stop"])
    parser.add_argument("--storage", default=None)
    parser.add_argument("--deadlines", default="")
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args()
    record = {"created": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": "python benchmarks/knobs_validate.py " + " ".join(sys.argv[1:]),
              "machine": machine(), "part": args.part}
    out = RESULTS / "knobs_validate.json"
    records = json.loads(out.read_text()) if out.exists() else []
    if args.part == "picks":
        record["picks"] = []
        for deadline in filter(None, args.deadlines.split(",")):
            record["picks"].append(validate_pick(args.storage, deadline))
            print(json.dumps(record["picks"][-1], default=str)[:600])
            out.write_text(json.dumps([*records, record], indent=2) + "\n")
    else:
        record["early_stop"] = early_stop(args.questions)
    records.append(record)
    out.write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "knobs_validate.md").write_text(markdown(records))


def markdown(records: list[dict]) -> str:
    """benchmarks/results/knobs_validate.md from every stored run."""
    lines = ["# Knob picks validated on the real engine; early-stopped voting measured", ""]
    for record in records:
        m = record["machine"]
        lines += [f"`{record['command']}`, {record['created']}, {m['cpu']} ({m['cores']} "
                  f"cores; 1-minute load {m['load_average_1m']:.1f} at the start).", ""]
        if record["part"] == "picks":
            lines += ["| deadline | pick (trial) | predicted accuracy, 95% for 100 questions "
                      "| measured accuracy | inside | predicted p90 (bound) | measured p90 "
                      "| within deadline |", "|---:|---|---|---:|---|---|---:|---|"]
            for entry in record.get("picks", []):
                lines.append(_pick_row(entry))
        else:
            lines += ["| model | N | vote | measured accuracy | measured p90 | p90 vs majority "
                      "| mean | aborted branches |", "|---|---:|---|---:|---:|---:|---:|---:|"]
            base = {}
            for row in record["early_stop"]:
                key = (row["model"], row["branches"])
                base.setdefault(key, row["p90_s"])
                change = row["p90_s"] / base[key] - 1
                lines.append(f"| {row['model']} | {row['branches']} | {row['vote']} "
                             f"| {row['accuracy']:.3f} | {row['p90_s'] * 1e3:.1f} ms "
                             f"| {change:+.1%} | {row['mean_s'] * 1e3:.1f} ms "
                             f"| {row['aborted_branches']} |")
        lines.append("")
    return "\n".join(lines)


def _pick_row(entry: dict) -> str:
    chosen, validation = entry["chosen"], entry["validation"]
    if chosen is None or validation is None:
        return f"| {entry['deadline']} | no pick uses a new knob | | | | | | |"
    config = chosen["configuration"]
    label = (f"{config['model']} N={config['branches']} vote={config['vote']}"
             + (f" max_tokens={config['max_tokens']}" if config["max_tokens"] else "")
             + (f" {config['speculation']['method']} g={config['speculation']['gamma']}"
                if config["speculation"] else "") + f" (t{chosen['number']})")
    low, high = validation["expected_accuracy_low"], validation["expected_accuracy_high"]
    measured = validation["measured_accuracy"]
    deadline_s = parse_duration(entry["deadline"])
    p90 = validation["measured_p90_latency_s"]
    return (f"| {entry['deadline']} | {label} | {validation['predicted_accuracy']:.3f} "
            f"[{low:.3f}, {high:.3f}] | {measured:.3f} "
            f"| {'yes' if low <= measured <= high else 'NO'} "
            f"| {validation['predicted_p90_latency_s'] * 1e3:.1f} ms "
            f"({chosen['latency_upper_s'] * 1e3:.1f}) | {p90 * 1e3:.1f} ms "
            f"| {'yes' if meets(p90, deadline_s) else 'NO'} |")


if __name__ == "__main__":
    main()

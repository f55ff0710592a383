"""Fidelity of the simulator: predicted vs measured latency (p50, p90) and accuracy.

For configurations spread over a study's models (the testbed: three models, N in 1..16,
gamma in 0..4; SmolLM2: N in 1..16, n-gram lookup at gamma 1 and 2), run the executor on
held-out questions (validation split) on the real engine and compare with the simulator's
predictions from the shipped profile. Targets (issues 4 and 17): median absolute
latency error <= 10% (stretch 5%), none above 25%; measured accuracy inside the predicted
95% interval for >= 90% of configurations. Writes benchmarks/results/fidelity.json and .md
with the machine description and the command.

The accuracy target is judged against the prediction for what is measured: accuracy on
`--questions` new questions (`simulator.predictive_interval`: the profile's estimation
error, question sampling and branch sampling). The bootstrap interval of the profile's mean
is reported too; it is narrower because it leaves out the last two. On the testbed each
configuration runs on its own slice of the validation split, so the checks are
independent; SmolLM2's split (128 questions) holds one slice of 100, so its configurations
all run on the same questions (a paired comparison: the accuracy checks move together).

Usage: python benchmarks/fidelity.py [--questions 100] [--spec studies/testbed.yaml]
       python benchmarks/fidelity.py --spec studies/smollm2/smollm2.yaml --max-model-len 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_runs import (  # noqa: E402
    RESULTS,
    machine_description,
    measure_all,
    open_testbed,
    relative_error,
)

from storage import Database, ProfileStore, Speculation, UserInputError  # noqa: E402
from tuner.core.configuration import Configuration  # noqa: E402
from tuner.core.operations import Workspace  # noqa: E402
from tuner.core.simulator import Simulator  # noqa: E402
from tuner.core.validate import predict  # noqa: E402

D = "tb-draft"
NGRAM = "ngram"  # prompt lookup with the options SmolLM2's study profiled
NGRAM_OPTIONS = (("prompt_lookup_max", 3), ("prompt_lookup_min", 1))
TESTBED = (  # (model, N, draft, gamma), grouped by engine
    ("tb-small", 1, None, 0), ("tb-small", 4, None, 0), ("tb-small", 16, None, 0),
    ("tb-small", 8, D, 2),
    ("tb-medium", 1, None, 0), ("tb-medium", 8, None, 0),
    ("tb-medium", 2, D, 1), ("tb-medium", 16, D, 4),
    ("tb-large", 1, None, 0), ("tb-large", 4, None, 0), ("tb-large", 16, None, 0),
    ("tb-large", 1, D, 3), ("tb-large", 4, D, 4), ("tb-large", 12, D, 4),
    ("tb-large", 8, D, 2),
    ("tb-small", 12, None, 0), ("tb-medium", 4, None, 0), ("tb-medium", 8, D, 4),
    ("tb-large", 2, None, 0), ("tb-large", 6, D, 3),
)
S = "SmolLM2-135M-Instruct"
SMOLLM2 = (
    (S, 1, None, 0), (S, 4, None, 0), (S, 8, None, 0), (S, 12, None, 0), (S, 16, None, 0),
    (S, 1, NGRAM, 3), (S, 4, NGRAM, 1), (S, 8, NGRAM, 2), (S, 16, NGRAM, 1),
)
CONFIGURATIONS = {"testbed": TESTBED, "smollm2": SMOLLM2}  # by the spec's study name


def main() -> None:
    args = parse_args()
    workspace = open_testbed(args.spec, RESULTS / "benchmarks.db")
    if args.decode_clock == "client":
        workspace = with_client_clock(workspace)
    temperature = workspace.space.models[0].temperatures[0]
    study = workspace.spec.name
    configs = [Configuration(m, n, speculation(d, g), temperature)
               for m, n, d, g in CONFIGURATIONS[study]]
    # each configuration on its own slice of the split where the split has enough, so
    # that the accuracy checks are independent (one easy or hard slice would otherwise
    # move them all together); else all on the first slice
    disjoint = has_questions(workspace, args.questions * len(configs))
    seeds = {config: index if disjoint else 0 for index, config in enumerate(configs)}
    measured = measure_all(workspace, configs, args.questions, seeds=seeds,
                           max_model_len=args.max_model_len)
    rows = [row_of(config, measured[config],
                   asdict(predict(workspace.simulator, config, questions=args.questions)))
            for config in configs]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": machine_description(), "decode_clock": args.decode_clock,
        "questions": args.questions, "split": "validation", "study": study,
        "disjoint_slices": disjoint,
        "summary": summarize(rows), "configurations": rows,
    }
    stem = "fidelity" if args.decode_clock == "engine" else "fidelity_client_clock"
    stem += "" if study == "testbed" else f"_{study}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def has_questions(workspace: Workspace, count: int) -> bool:
    """Whether the validation split holds `count` questions."""
    try:
        workspace.task().load_questions("validation", count)
    except UserInputError:
        return False
    return True


def speculation(source: str | None, gamma: int) -> Speculation | None:
    """A configuration's speculation: none, n-gram lookup or a draft model by name."""
    if source is None:
        return None
    if source == NGRAM:
        return Speculation(NGRAM, gamma, options=NGRAM_OPTIONS)
    return Speculation("draft_model", gamma, source)


def with_client_clock(workspace: Workspace) -> Workspace:
    """The workspace with decode/prefill costs of client_clock_profile.py where measured."""
    with Database(f"sqlite:///{RESULTS / 'client_clock.db'}") as db:
        client = ProfileStore(db).load_profile_set().cost_points
    measured = {(p.model, p.draft, p.gamma, p.phase) for p in client}
    kept = [p for p in workspace.profile.cost_points
            if (p.model, p.draft, p.gamma, p.phase) not in measured]
    profile = replace(workspace.profile, cost_points=(*kept, *client))
    return replace(workspace, profile=profile,
                   simulator=Simulator(profile, workspace.spec.task, split=workspace.spec.split))


def row_of(config: Configuration, run: dict, predicted: dict) -> dict:
    measured = run["measured"]
    accuracy = measured["accuracy"]
    return {
        "configuration": config.label(),
        "predicted_p50_s": predicted["p50_latency_s"], "measured_p50_s": measured["p50_latency_s"],
        "p50_error": relative_error(predicted["p50_latency_s"], measured["p50_latency_s"]),
        "predicted_p90_s": predicted["p90_latency_s"], "measured_p90_s": measured["p90_latency_s"],
        "p90_error": relative_error(predicted["p90_latency_s"], measured["p90_latency_s"]),
        "predicted_mean_s": predicted["mean_latency_s"],
        "measured_mean_s": measured["mean_latency_s"],
        "predicted_accuracy": predicted["accuracy"],
        "predicted_interval": [predicted["accuracy_low"], predicted["accuracy_high"]],
        "expected_range": [predicted["expected_low"], predicted["expected_high"]],
        "measured_accuracy": accuracy,
        "measured_interval": [measured["accuracy_low"], measured["accuracy_high"]],
        "inside_mean_interval":
            predicted["accuracy_low"] <= accuracy <= predicted["accuracy_high"],
        "inside_predicted_interval":
            predicted["expected_low"] <= accuracy <= predicted["expected_high"],
        "diagnostics": run["diagnostics"],
    }


def summarize(rows: list[dict]) -> dict:
    errors = [abs(r[key]) for r in rows for key in ("p50_error", "p90_error")]
    inside = sum(r["inside_predicted_interval"] for r in rows)
    inside_mean = sum(r["inside_mean_interval"] for r in rows)
    return {
        "configurations": len(rows),
        "median_abs_latency_error": statistics.median(errors),
        "median_abs_p50_error": statistics.median(abs(r["p50_error"]) for r in rows),
        "median_abs_p90_error": statistics.median(abs(r["p90_error"]) for r in rows),
        "max_abs_latency_error": max(errors),
        "over_25_percent": sum(e > 0.25 for e in errors),
        "accuracy_inside_predicted_interval": inside / len(rows),
        "accuracy_inside_mean_interval": inside_mean / len(rows),
        "targets_met": {
            "median_abs_latency_error<=10%": statistics.median(errors) <= 0.10,
            "none_above_25%": max(errors) <= 0.25,
            "accuracy_inside_interval>=90%": inside / len(rows) >= 0.9,
        },
    }


def markdown(result: dict) -> str:
    machine, summary = result["machine"], result["summary"]
    lines = [
        f"# Simulator fidelity: {result.get('study', 'testbed')}", "",
        f"`{result['command']}` — {result['finished_at']}", "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, "
        f"{machine['memory_gib']} GiB; {machine['engine']}; Python {machine['python']}",
        f"- {machine['note']} (load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average'])})",
        f"- {result['questions']} {result['split']} questions per configuration, one "
        "request at a time; predictions from the shipped profile (heldout split), decode "
        f"costs on the {result['decode_clock']} clock; "
        + ("each configuration on its own slice of the split" if result.get(
            "disjoint_slices", True) else "every configuration on the same questions"), "",
        "| configuration | p50 pred | p50 meas | err | p90 pred | p90 meas | err "
        "| accuracy pred (95% CI of the mean) | 95% prediction on these questions | measured "
        "| inside |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in result["configurations"]:
        low, high = r["predicted_interval"]
        expected_low, expected_high = r["expected_range"]
        lines.append(
            f"| {r['configuration']} | {r['predicted_p50_s']:.3f} | {r['measured_p50_s']:.3f} "
            f"| {r['p50_error']:+.1%} | {r['predicted_p90_s']:.3f} | {r['measured_p90_s']:.3f} "
            f"| {r['p90_error']:+.1%} | {r['predicted_accuracy']:.3f} ({low:.3f}-{high:.3f}) "
            f"| {expected_low:.3f}-{expected_high:.3f} | {r['measured_accuracy']:.3f} "
            f"| {'yes' if r['inside_predicted_interval'] else 'no'} |")
    met = summary["targets_met"]
    lines += [
        "", "## Summary", "",
        f"- median |latency error| (p50 and p90): {summary['median_abs_latency_error']:.1%} "
        f"(p50 {summary['median_abs_p50_error']:.1%}, p90 {summary['median_abs_p90_error']:.1%})"
        f" — target <= 10%: {'met' if met['median_abs_latency_error<=10%'] else 'MISSED'}",
        f"- largest |latency error|: {summary['max_abs_latency_error']:.1%}, "
        f"{summary['over_25_percent']} above 25% — target none: "
        f"{'met' if met['none_above_25%'] else 'MISSED'}",
        f"- measured accuracy inside the predicted 95% interval for {result['questions']} "
        f"new questions: {summary['accuracy_inside_predicted_interval']:.0%} — target >= 90%: "
        f"{'met' if met['accuracy_inside_interval>=90%'] else 'MISSED'}",
        f"- measured accuracy inside the 95% interval of the profile's mean (narrower: "
        f"leaves out question and branch sampling of the run): "
        f"{summary['accuracy_inside_mean_interval']:.0%}",
    ]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--spec", default=None)
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="the engine's context length (SmolLM2: 256, as profiled; "
                             "default: the model's own)")
    parser.add_argument("--decode-clock", choices=("engine", "client"), default="engine",
                        help="engine: the shipped profile; client: decode/prefill costs "
                             "re-measured by client_clock_profile.py")
    return parser.parse_args()


if __name__ == "__main__":
    main()

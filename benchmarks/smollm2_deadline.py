"""Does a SmolLM2 pick meet its deadline when deployed? (issue 17, must-show 3)

As a user on a fresh clone after the README's setup: for each deadline, in a new folder
(so a new database), `latts-tune run --spec studies/smollm2/smollm2.yaml --deadline D`,
the `export` it prints, then `latts-tune validate --preset NAME --questions 100` on the
real engine (as deployed: vLLM's own process layout). A pick holds when the measured p90
meets the deadline. Each deadline has its own folder, so no validation corrects the next
pick.

Usage: python benchmarks/smollm2_deadline.py [--deadlines 1.5s,2s,3s] [--questions 100]
Writes benchmarks/results/smollm2_deadline.json and .md; the folders go to a temporary
directory printed at the start.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_runs import REPO, RESULTS, machine_description  # noqa: E402

from tuner.core.durations import parse_duration  # noqa: E402

SPEC = REPO / "studies" / "smollm2" / "smollm2.yaml"
LATTS_TUNE = Path(sys.executable).with_name("latts-tune")
STEP_TIMEOUT_S = 1800


def tune(folder: Path, *args: str) -> str:
    done = subprocess.run([LATTS_TUNE.as_posix(), *args], cwd=folder, capture_output=True,
                          text=True, timeout=STEP_TIMEOUT_S)
    if done.returncode != 0:
        raise SystemExit(f"latts-tune {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stdout}\n{done.stderr[-2000:]}")
    return done.stdout


def hold(folder: Path, deadline: str, questions: int) -> dict:
    folder.mkdir()
    ran = tune(folder, "run", "--spec", str(SPEC), "--deadline", deadline)
    export = re.search(r"^Export: latts-tune (.+)$", ran, re.M).group(1).split()
    name = re.search(r"Preset (\S+) \(stored", tune(folder, *export)).group(1)
    preset = json.loads(tune(folder, "presets", "show", name))
    record = json.loads(tune(folder, "validate", "--preset", name, "--questions",
                             str(questions), "--json"))
    predicted = preset["predicted"]
    deadline_s = parse_duration(deadline)
    return {
        "deadline": deadline, "preset": name, "cost_source": ran.splitlines()[0],
        "configuration": {k: preset["request"][k] for k in ("n", "temperature", "max_tokens",
                                                          "aggregation")},
        "speculative_config": preset["serving"]["vllm"].get("speculative-config"),
        "predicted_p90_s": predicted["latency_s"],
        "predicted_p90_bound_s": predicted["latency_upper_s"],
        "predicted_accuracy": predicted["accuracy"],
        "expected_accuracy_range": [record["expected_accuracy_low"],
                                    record["expected_accuracy_high"]],
        "measured_p90_s": record["measured_p90_latency_s"],
        "measured_mean_s": record["measured_mean_latency_s"],
        "measured_accuracy": record["measured_accuracy"],
        "met": record["measured_p90_latency_s"] <= deadline_s,
        "accuracy_inside": (record["expected_accuracy_low"] <= record["measured_accuracy"]
                            <= record["expected_accuracy_high"]),
    }


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        "# SmolLM2 picks deployed: do they meet their deadline? (issue 17)", "",
        f"`{result['command']}` — {result['started_at']} to {result['finished_at']}", "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, "
        f"{machine['memory_gib']} GiB (fingerprint `{machine['fingerprint']}`); "
        f"{machine['engine']}",
        f"- each deadline in a new folder: `run --spec studies/smollm2/smollm2.yaml`, the "
        f"export it prints, `validate --questions {result['questions']}` (validation split, "
        "vLLM in its deployed process layout)",
        f"- step costs: {result['rows'][0]['cost_source'] if result['rows'] else '-'}", "",
        "| deadline | pick | predicted p90 | bound (confidence 0.9) | measured p90 | met "
        "| predicted accuracy | 95% range on these questions | measured | inside |",
        "|---|---|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for r in result["rows"]:
        config = r["configuration"]
        pick = f"N={config['n']} {config['aggregation']}" + (
            f", {r['speculative_config']}" if r["speculative_config"] else "")
        low, high = r["expected_accuracy_range"]
        lines.append(
            f"| {r['deadline']} | {pick} | {r['predicted_p90_s']:.3f} s "
            f"| {r['predicted_p90_bound_s']:.3f} s | {r['measured_p90_s']:.3f} s "
            f"| {'yes' if r['met'] else 'NO'} | {r['predicted_accuracy']:.3f} "
            f"| {low:.3f}-{high:.3f} | {r['measured_accuracy']:.3f} "
            f"| {'yes' if r['accuracy_inside'] else 'no'} |")
    met = sum(r["met"] for r in result["rows"])
    lines += ["", f"{met} of {len(result['rows'])} picks met their deadline measured."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadlines", default="1.5s,2s,3s")
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="latts-smollm2-deadline-"))
    print(f"folders in {root}", file=sys.stderr)
    started = datetime.now(UTC).isoformat()
    rows = []
    for deadline in args.deadlines.split(","):
        rows.append(hold(root / deadline, deadline, args.questions))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    result = {"command": " ".join(["python", *sys.argv]), "started_at": started,
              "finished_at": datetime.now(UTC).isoformat(), "machine": machine_description(),
              "questions": args.questions, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "smollm2_deadline.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "smollm2_deadline.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

"""A measure-mode study on the testbed, interrupted and resumed (issue 4, "must show" 4).

Runs `latts-tune run --mode measure` in a subprocess on a fresh database, sends Ctrl-C
(SIGINT) once `--interrupt-after` trials are complete, then reruns the same command, which
continues the study to `--budget-trials` trials. Writes benchmarks/results/measure_study.md
and .json with both runs' output.

Usage: python benchmarks/measure_study.py [--deadline 1s] [--budget-trials 8]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna  # noqa: E402
from engine_runs import REPO, RESULTS, machine_description  # noqa: E402

DB = RESULTS / "measure_study.db"


def main() -> None:
    args = parse_args()
    DB.unlink(missing_ok=True)
    url = f"sqlite:///{DB}"
    command = [str(Path(sys.executable).parent / "latts-tune"), "--storage", url, "run",
               "--deadline", args.deadline, "--mode", "measure", "--budget-trials",
               str(args.budget_trials), "--questions", str(args.questions)]
    interrupted = run_until(command, url, args.interrupt_after)
    started_s = time.perf_counter()
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    result = {
        "command": " ".join(command[1:]),
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": machine_description(),
        "interrupted_run": interrupted,
        "resumed_run": {"exit_code": resumed.returncode, "stdout": resumed.stdout,
                        "stderr_tail": resumed.stderr[-2000:],
                        "seconds": time.perf_counter() - started_s},
        "trial_states": trial_states(url),
    }
    (RESULTS / "measure_study.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "measure_study.md").write_text(markdown(result))
    print(markdown(result))


def run_until(command: list[str], url: str, trials: int) -> dict:
    """Start the study; send SIGINT once `trials` trials are complete."""
    started_s = time.perf_counter()
    # A shell's background job ignores SIGINT and children inherit that: restore it.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while process.poll() is None:
        time.sleep(2)
        if completed(url) >= trials:
            process.send_signal(signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=300)
    return {"exit_code": process.returncode, "stdout": stdout, "stderr_tail": stderr[-2000:],
            "completed_before_interrupt": completed(url),
            "seconds": time.perf_counter() - started_s}


def completed(url: str) -> int:
    """Complete trials, read with plain sqlite3 (no Optuna schema work beside a writer)."""
    import sqlite3

    try:
        with sqlite3.connect(DB, timeout=1) as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
    except sqlite3.Error:  # not created yet, or busy: ask again later
        return 0
    return int(row[0])


def trial_states(url: str) -> list[dict]:
    rows = []
    for summary in optuna.get_all_study_summaries(storage=url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        rows += [{"study": summary.study_name, "number": t.number, "state": t.state.name,
                  "params": t.params} for t in study.get_trials()]
    return rows


def markdown(result: dict) -> str:
    interrupted, resumed = result["interrupted_run"], result["resumed_run"]
    states = ", ".join(f"#{t['number']} {t['state']}" for t in result["trial_states"])
    return "\n".join([
        "# Measure-mode study on the testbed (interrupted, then resumed)", "",
        f"`latts-tune {result['command']}` — {result['finished_at']}", "",
        f"- machine: {result['machine']['cpu_model']}, {result['machine']['cpu_cores']} "
        f"cores; {result['machine']['engine']}",
        f"- first run: SIGINT after {interrupted['completed_before_interrupt']} complete "
        f"trials, exit code {interrupted['exit_code']}, {interrupted['seconds']:.0f} s",
        f"- second run (same command): exit code {resumed['exit_code']}, "
        f"{resumed['seconds']:.0f} s",
        f"- trials stored: {states}", "",
        "## Output of the resumed run", "", "```", resumed["stdout"].rstrip(), "```", "",
    ])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", default="1s")
    parser.add_argument("--budget-trials", type=int, default=8)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--interrupt-after", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    main()

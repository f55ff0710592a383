"""The README followed as a newcomer would (issue 19): the quick start and every command of
the README's command list, run as the installed `latts-tune` in a fresh folder whose
default database (`latts-tune.db`) starts empty, each checked to exit 0 and print what the
README says it prints.

Each step names the README line it follows (`test_every_readme_command_is_walked` checks
that every command line of the README has a step). A step runs that line with its
placeholders filled; `shrink` appends options that keep CI short (fewer questions, a
smaller budget), which click lets override the README's values.

Order: the command list as written, except `calibrate`, which runs last with the quick
start's second line: a calibration corrects the costs, so the studies after it carry a
correction in their names ("-c<id>") and the README's literal `--study testbed-150ms-q0.9`
would name the uncorrected study. The tests of this module share one folder and run in
file order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from vllm_server import VllmServer, free_port, start_vllm_server

from tuner.gateway.engine import wait_until_serving

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
LATTS_TUNE = Path(sys.executable).with_name("latts-tune")
STEP_TIMEOUT_S = 600
MODEL = "tb-small"
MODELS = ROOT / "studies" / "testbed" / "models"  # the README's M and D are directories
SMOLLM2_SPEC = "studies/smollm2/smollm2.yaml"
SMOLLM2_DEADLINE = "2s"  # inside the shipped SmolLM2 profile's feasible range (its CARD.md)


@dataclass
class Walk:
    """The newcomer's folder, and what earlier steps left for later ones."""

    folder: Path
    values: dict[str, str] = field(default_factory=dict)
    server: VllmServer | None = None  # the preset's `vllm serve`, shared by three steps
    served: dict = field(default_factory=dict)  # the preset's vLLM config it serves

    def run(self, readme_line: str, *shrink: str, ok_codes=(0,)) -> subprocess.CompletedProcess:
        argv = [LATTS_TUNE.as_posix(), *self.fill(readme_line).split()[1:], *shrink]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATTS_TUNE_")}
        done = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT_S, env=env)
        assert done.returncode in ok_codes, (
            f"{' '.join(argv[1:])} exited {done.returncode}\n{done.stdout}\n"
            f"{done.stderr[-3000:]}")
        return done

    def fill(self, readme_line: str) -> str:
        """The README's placeholders (NAME, FILE, M, D, ...) replaced by real values, its
        optional parts ([--budget 30]) included."""
        words = readme_line.replace("[", "").replace("]", "").split()
        return " ".join(self.values.get(word, word) for word in words)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("newcomer")
    walked = Walk(folder, {"M": str(MODELS / MODEL), "D": str(MODELS / "tb-draft"),
                           "TASK": "arithmetic",
                           "MODEL": MODEL})
    yield walked
    if walked.server is not None:
        walked.server.stop()


def readme_command_lines() -> list[str]:
    """The README's commands: the quick start's and the command list's, without the
    descriptions after them and with `a | b` alternatives split."""
    text = (ROOT / "README.md").read_text()
    quick = re.findall(r"\.venv/bin/(latts-tune [^&\n]+?)(?:\s*&&|\n)", text)
    listed = re.search(r"## Commands\n\n```\n(.*?)```", text, re.S).group(1)
    lines = []
    for line in listed.splitlines():
        if not line.startswith("latts-tune"):
            continue
        command = re.split(r"\s{2,}", line)[0]
        head, *alternatives = command.split(" | ")
        lines.append(head)
        prefix = " ".join(head.split()[:2])
        lines += [f"{prefix} {alt}" for alt in alternatives]
    return [q.strip() for q in quick] + lines


WALKED: set[str] = set()


def follows(readme_line: str) -> str:
    """Record that a step follows this README line; the line, for the step to run."""
    assert readme_line in readme_command_lines(), f"not a README command: {readme_line}"
    WALKED.add(readme_line)
    return readme_line


def test_quick_start_run_names_the_cost_source_and_prints_the_export_command(walk):
    done = walk.run(follows("latts-tune run --deadline 150ms"))
    lines = done.stdout.splitlines()
    # The first line says where the step costs come from and how to check them here.
    assert "latts-tune calibrate" in lines[0] or "measured on this machine" in lines[0], lines[0]
    assert "margin" in done.stdout and "bound" in done.stdout
    assert ("Export: latts-tune export --study testbed-150ms-q0.9 --format vllm -o presets/"
            in lines)


def test_frontier_prints_one_row_per_deadline(walk):
    done = walk.run(follows("latts-tune frontier --deadlines 70ms:200ms:8"))
    for deadline in ("70ms", "200ms"):
        assert deadline in done.stdout


def test_export_writes_and_stores_a_preset(walk):
    done = walk.run(follows(
        "latts-tune export --study testbed-150ms-q0.9 --format vllm -o presets/"))
    name = re.search(r"Preset (\S+) \(stored in the database\)", done.stdout).group(1)
    walk.values["NAME"] = name
    files = sorted(p.name for p in (walk.folder / "presets").iterdir())
    assert files == [f"{name}.request.json", f"{name}.vllm.yaml"]
    assert "Start the server:" in done.stdout


def test_run_under_load_names_the_load(walk):
    done = walk.run(follows("latts-tune run --deadline 150ms --load 4rps"))
    assert "under 4 requests/s (Poisson)" in done.stdout.replace("\n", " ")


def test_frontier_over_loads_prints_a_row_per_load(walk):
    done = walk.run(follows("latts-tune frontier --loads 0.5rps:8rps:6 --deadline 150ms"),
                    "--json")
    points = json.loads(done.stdout)["points"]
    assert len(points) == 6 and points[0]["load"] == "0.5rps"


def test_presets_list_show_and_import(walk):
    name = walk.values["NAME"]
    assert name in walk.run(follows("latts-tune presets list")).stdout
    shown = walk.run(follows("latts-tune presets show NAME")).stdout
    assert json.loads(shown)["name"] == name and json.loads(shown)["request"]["n"] >= 1
    (walk.folder / "shown.preset.json").write_text(shown)  # as another machine gets it
    walk.values["FILE"] = "shown.preset.json"
    imported = walk.run(follows("latts-tune presets import FILE"))
    assert f"stored preset {name}" in imported.stdout


def test_validate_runs_the_preset_on_the_engine(walk):
    done = walk.run(follows("latts-tune validate --preset NAME --questions 100"),
                    "--questions", "4", "--json")
    record = json.loads(done.stdout)
    assert len(record["latencies_s"]) == 4 and all(x > 0 for x in record["latencies_s"])
    assert 0 <= record["measured_accuracy"] <= 1 and record["engine_version"].startswith("vllm")
    assert record["predicted_p50_latency_s"] <= record["predicted_p90_latency_s"]


def start_server_once(walk: Walk) -> None:
    """`vllm serve` started with the exported preset's command, for the server steps."""
    if walk.server is None:
        config = walk.folder / "presets" / f"{walk.values['NAME']}.vllm.yaml"
        walk.served = yaml.safe_load(config.read_text())
        walk.server = start_vllm_server(walk.served["model"], "--config", str(config),
                                        "--enforce-eager")
        walk.values["http://127.0.0.1:8000"] = walk.server.base_url


def test_validate_through_the_running_server(walk):
    start_server_once(walk)
    done = walk.run(follows(
        "latts-tune validate --preset NAME --server-url http://127.0.0.1:8000"),
        "--questions", "3", "--json")
    record = json.loads(done.stdout)
    assert len(record["latencies_s"]) == 3 and record["engine_version"].startswith(
        "vllm-server")


def test_gateway_in_front_of_the_server_and_validate_through_it(walk):
    start_server_once(walk)
    port = free_port()
    argv = [LATTS_TUNE.as_posix(), *walk.fill(follows(
        "latts-tune serve --preset NAME --upstream http://127.0.0.1:8000")).split()[1:],
        "--port", str(port)]
    gateway = subprocess.Popen(argv, cwd=walk.folder, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    walk.values["http://127.0.0.1:8080"] = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(gateway, f"http://127.0.0.1:{port}/health", 60, "latts-tune serve")
        done = walk.run(follows(
            "latts-tune validate --preset NAME --gateway-url http://127.0.0.1:8080"),
            "--questions", "3", "--json")
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
    record = json.loads(done.stdout)
    assert len(record["latencies_s"]) == 3 and all(x > 0 for x in record["latencies_s"])


def test_profile_through_the_running_server(walk):
    start_server_once(walk)
    speculative = json.loads(walk.served.get("speculative-config") or "null")
    model = walk.served["model"]
    if speculative is None:  # what a server profiles is what it serves
        walk.values["..."] = f"accuracy --model {model} --questions 3 --samples 2"
    else:
        walk.values["..."] = (f"acceptance --model {model} --draft {speculative['model']} "
                              f"--gamma {speculative['num_speculative_tokens']} "
                              "--questions 3 --branches 2")
    walk.run(follows("latts-tune profile ... --server-url http://127.0.0.1:8000"))
    walk.server.stop()
    walk.server = None


def test_measure_mode_runs_trials_on_the_engine(walk):
    done = walk.run(follows(
        "latts-tune run --deadline 150ms --mode measure --budget-trials 8"),
        "--budget-trials", "1", "--questions", "3", "--json")
    outcome = json.loads(done.stdout)
    assert len(outcome["trials"]) == 1 and outcome["new_trials"] == 1


def test_dashboard_serves_the_studies(walk):
    port = free_port()
    walk.values["8080"] = str(port)
    argv = [LATTS_TUNE.as_posix(),
            *walk.fill(follows("latts-tune dashboard [--port 8080]")).split()[1:]]
    process = subprocess.Popen(argv, cwd=walk.folder, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/studies"
        wait_until_serving(process, url, 60, "latts-tune dashboard")
        studies = httpx.get(url, timeout=5).raise_for_status().json()
    finally:
        process.terminate()  # the normal way to stop it (README: Ctrl-C or SIGTERM)
        process.wait(timeout=60)
    assert "testbed-150ms-q0.9" in {s["study_name"] for s in studies["study_summaries"]}


def test_report_writes_one_html_file(walk):
    walk.run(follows("latts-tune report --study testbed-150ms-q0.9 -o report.html"))
    html = (walk.folder / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "testbed-150ms-q0.9" in html


def test_profile_decode_within_its_budget(walk):
    line = follows("latts-tune profile decode --model M [--draft D --gamma 1,2,4] [--budget 30]")
    done = walk.run(line, "--gamma", "2", "--budget", "0.7")
    assert "The budget covered" in done.stdout or "points in" in done.stdout


def test_profile_acceptance(walk):
    done = walk.run(follows("latts-tune profile acceptance --model M --draft D --gamma 1,2,3,4"),
                    "--gamma", "2", "--questions", "4", "--branches", "2")
    assert "gamma=2: per-position acceptance" in done.stdout


def test_profile_accuracy(walk):
    walk.run(follows(
        "latts-tune profile accuracy --model M --questions 200 --samples 16 [--task TASK]"),
        "--questions", "4", "--samples", "2")


def test_profiles_list_show_export_import(walk):
    listed = walk.run(follows("latts-tune profiles list")).stdout
    assert MODEL in listed and "tb-large" in listed
    shown = walk.run(follows("latts-tune profiles show MODEL")).stdout
    assert "accuracy" in shown
    walk.values["FILE"] = "profiles.json.gz"
    exported = walk.run(follows("latts-tune profiles export FILE")).stdout
    assert exported.startswith("exported ") and (walk.folder / "profiles.json.gz").exists()
    imported = walk.run(follows("latts-tune profiles import FILE")).stdout
    assert imported.startswith("imported from profiles.json.gz: new")
    carded = walk.run(follows("latts-tune profiles card -o CARD.md")).stdout
    card = (walk.folder / "CARD.md").read_text()
    assert carded.startswith("wrote CARD.md") and f"| {MODEL} | arithmetic |" in card


def test_smollm2_study_runs_on_its_shipped_profile_and_exports_a_preset(walk):
    """The README's real-model study, in a folder (so a database) of its own: `run` imports
    studies/smollm2/profile.json.gz, picks within the deadline and names the export."""
    own = Walk(walk.folder / "smollm2", {SMOLLM2_SPEC: str(ROOT / SMOLLM2_SPEC)})
    own.folder.mkdir()
    done = own.run(follows(f"latts-tune run --spec {SMOLLM2_SPEC} --deadline {SMOLLM2_DEADLINE}"))
    assert "SmolLM2-135M-Instruct" in done.stdout and "bound" in done.stdout
    study = f"smollm2-{SMOLLM2_DEADLINE}-q0.9"
    assert f"Export: latts-tune export --study {study} --format vllm -o presets/" in done.stdout
    exported = own.run(follows(f"latts-tune export --study {study} --format vllm -o presets/"))
    name = re.search(r"Preset (\S+) \(stored in the database\)", exported.stdout).group(1)
    request = json.loads((own.folder / "presets" / f"{name}.request.json").read_text())
    client = request["request"]
    assert client["stop"] == ["\n", "<|im_end|>"] and client["n"] >= 1


def test_quick_start_calibrate_then_run_says_corrected(walk):
    from profilers import describe_local_hardware
    from storage import Database, LatencyCheckStore
    from tuner.core.calibration import Corrections

    began = time.perf_counter()
    calibrated = json.loads(walk.run(follows("latts-tune calibrate"), "--budget", "90s",
                                     "--json").stdout)
    elapsed_s = time.perf_counter() - began
    assert elapsed_s < 90 + 60  # the budget holds, bar one request round
    checked = calibrated["checked"]
    assert checked, calibrated
    # Not near 1 on every machine: machines with the profile's fingerprint measured
    # 4-9 (README), which is what calibrating is for.
    assert all(0.05 < c["scale"] < 50 for c in checked), checked
    with Database(f"sqlite:///{walk.folder / 'latts-tune.db'}") as db:
        checks = LatencyCheckStore(db).on(describe_local_hardware().fingerprint)
    # Each validation above stored a check as well (feedback); calibrate one per branch count.
    calibration = [c for c in checks if c.source.startswith("calibrate")]
    assert len(calibration) == sum(len(c["branches"]) for c in checked)
    first = Corrections(calibration).for_slice(MODEL, None)
    tb_small = [c for c in checked if c["configuration"] == MODEL]
    if tb_small:
        assert abs(first.scale - tb_small[0]["scale"]) < 1e-9 * first.scale
    # The corrected costs may put 150 ms out of this machine's reach; then `run` says so
    # in its one error line, naming the fastest configuration, and the frontier the README
    # suggests there carries the same first line.
    done = walk.run(follows("latts-tune run --deadline 150ms"), ok_codes=(0, 2))
    if done.returncode == 2:
        assert done.stderr.splitlines()[-1].startswith(
            "Error: no configuration meets the 150ms deadline; the fastest is"), done.stderr
        done = walk.run("latts-tune frontier --deadlines 150ms:1.5s:8")  # as the README says
    said = f"corrected by {Corrections(checks).describe()}."  # e.g. "2 validations and 6 ..."
    assert done.stdout.splitlines()[0].endswith(said), done.stdout.splitlines()[0]
    assert f"{len(calibration)} calibration runs" in said


def test_every_readme_command_is_walked():
    missing = [line for line in readme_command_lines() if line not in WALKED]
    assert not missing, f"README commands no step follows: {missing}"


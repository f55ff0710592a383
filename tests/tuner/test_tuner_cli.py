"""`latts-tune run|frontier|export|presets` through click's CliRunner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuner_synthetic import HARDWARE, family_profile

from storage import Database, ProfileRecords, ProfileStore
from tuner.cli import cli
from tuner.core.configuration import LatencyObjective
from tuner.core.durations import parse_duration
from tuner.core.frontier import exhaustive_optimum
from tuner.core.simulator import Simulator
from tuner.core.space import build_space
from tuner.core.spec import StudySpec

PROFILE = family_profile(questions=20, k=8)
SPEC_YAML = "name: fam\ntask: arithmetic\n"
DEADLINE_S = 6.0


@pytest.fixture
def workdir(tmp_path):
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
            acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    spec = tmp_path / "fam.yaml"
    spec.write_text(SPEC_YAML)
    return url, spec


def invoke(*args, catch=False):
    return CliRunner().invoke(cli, list(args), catch_exceptions=catch)


@pytest.mark.parametrize(
    ("deadline", "message"),
    [
        ("60", "deadline '60' has no unit; write 60s, 500ms or 2m"),
        ("-1s", "deadline '-1s' must be greater than 0; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("0", "deadline '0' must be greater than 0; write e.g. 60s, 1.5s, 500ms or 2m"),
        ("abc", "deadline 'abc' is not a duration; write e.g. 60s, 1.5s, 500ms or 2m"),
    ],
)
def test_bad_deadlines_exit_2_with_one_clear_line(deadline, message):
    result = invoke("run", "--deadline", deadline, catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: Invalid value for '--deadline': {message}")


def test_bad_frontier_range():
    result = invoke("frontier", "--deadlines", "5s:1s:3", catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: Invalid value for '--deadlines': deadline range '5s:1s:3': "
        "STOP must not be below START")


P90 = LatencyObjective()


def expected_optimum(latency=P90):
    spec = StudySpec(name="fam", task="arithmetic")
    space = build_space(PROFILE, spec)
    return exhaustive_optimum(space, Simulator(PROFILE, spec.task), DEADLINE_S, latency)


def test_run_prints_the_best_configuration_and_where_it_is_stored(workdir):
    url, spec = workdir
    result = invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec))
    assert result.exit_code == 0, result.output
    optimum = expected_optimum()
    assert "Best configurations for a 6s deadline (p90 latency)" in result.output
    assert f"{optimum.accuracy:.1%}" in result.output
    assert "no speculation" in result.output and "one branch" in result.output
    assert f"Study 'fam-6s-q0.9' in {url}" in result.output.replace("\n", "")


def test_run_json_matches_the_exhaustive_optimum(workdir):
    url, spec = workdir
    result = invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec),
                    "--mean", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    optimum = expected_optimum(LatencyObjective("mean"))
    best = data["best"][0]
    assert best["configuration"]["model"] == optimum.configuration.model
    assert best["configuration"]["branches"] == optimum.configuration.branches
    assert best["accuracy"] == optimum.accuracy
    assert data["study"] == "fam-6s-mean" and data["latency"]["statistic"] == "mean"


def test_a_mean_deadline_shows_one_mean_latency_column(workdir):
    url, spec = workdir
    result = invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec),
                    "--mean")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "model" in line)
    assert header.count("mean latency") == 1, header


def test_infeasible_deadline_names_the_fastest_configuration(workdir):
    url, spec = workdir
    result = invoke("--storage", url, "run", "--deadline", "10ms", "--spec", str(spec),
                    catch=True)
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: no configuration meets the 10ms deadline; the fastest is "
                           "small N=1 T=1 with p90 latency ")
    assert "with 90% confidence); allow at least " in line


def test_quantile_and_mean_together_is_a_usage_error(workdir):
    url, spec = workdir
    result = invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec),
                    "--mean", "--quantile", "0.5", catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: give --quantile or --mean, not both")


def test_frontier_json_has_one_point_per_deadline(workdir):
    url, spec = workdir
    result = invoke("--storage", url, "frontier", "--deadlines", "2s:12s:6", "--spec",
                    str(spec), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["hardware"].endswith("(feedc0ffee12)") or document["note"]
    points = document["points"]
    assert [p["deadline_s"] for p in points] == pytest.approx([2, 4, 6, 8, 10, 12])
    accuracies = [p["best"]["accuracy"] for p in points if p["best"]]
    assert accuracies == sorted(accuracies)
    table = invoke("--storage", url, "frontier", "--deadlines", "2s:12s:6", "--spec",
                   str(spec))
    assert "changed" in table.output and "optimum" in table.output


def test_export_writes_files_and_stores_the_preset(workdir, tmp_path):
    url, spec = workdir
    assert invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec)).exit_code == 0
    out = tmp_path / "presets"
    result = invoke("--storage", url, "export", "--study", "fam-6s-q0.9", "--format", "vllm",
                    "-o", str(out))
    assert result.exit_code == 0, result.output
    (vllm_file,) = out.glob("*.vllm.yaml")
    name = vllm_file.name.removesuffix(".vllm.yaml")
    listed = json.loads(invoke("--storage", url, "presets", "list", "--json").output)
    assert (listed[0]["name"], listed[0]["study"]) == (name, "fam-6s-q0.9")
    assert listed[0]["latency_statistic"] == "p90 latency"
    table = invoke("--storage", url, "presets", "list").output
    assert name in table and "(p90 latency)" in table
    shown = json.loads(invoke("--storage", url, "presets", "show", name).output)
    assert shown["latts_preset"] == 1
    assert shown["predicted"]["deadline_s"] == DEADLINE_S
    assert shown["predicted"]["latency_s"] <= DEADLINE_S


def test_export_of_an_unknown_study(workdir, tmp_path):
    url, _ = workdir
    result = invoke("--storage", url, "export", "--study", "nope", "-o", str(tmp_path),
                    catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: no study named 'nope' in {url}; run `latts-tune run` first")


@pytest.mark.parametrize("command", [["run"], ["frontier"], ["export"], ["presets"],
                                     ["presets", "list"], ["presets", "show"]])
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example: latts-tune" in result.output


def test_importing_tuner_leaves_vllm_and_torch_out():
    code = "import sys, tuner, tuner.cli; print(sorted({'vllm', 'torch'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, check=True).stdout
    assert output.strip() == "[]"


def test_readme_main_command_meets_its_deadline_on_a_fresh_database(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    deadline = re.search(r"latts-tune run --deadline (\S+)\n", readme).group(1)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = invoke("--storage", url, "run", "--deadline", deadline, "--json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.output)["best"][0]
    assert best["latency_s"] <= parse_duration(deadline)
    assert best["configuration"]["model"] in {"tb-small", "tb-medium", "tb-large"}


def test_run_under_load_names_the_load_and_export_sizes_the_engine(workdir, tmp_path):
    url, spec = workdir
    result = invoke("--storage", url, "run", "--deadline", "12s", "--load", "0.2rps",
                    "--spec", str(spec))
    assert result.exit_code == 0, result.output
    assert "under 0.2 requests/s (Poisson)" in result.output.replace("\n", "")
    assert "fam-12s-q0.9-at0.2rps" in result.output.replace("\n", "")
    out = tmp_path / "presets"
    exported = invoke("--storage", url, "export", "--study", "fam-12s-q0.9-at0.2rps",
                      "--format", "json", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    (preset_file,) = out.glob("*.preset.json")
    preset = json.loads(preset_file.read_text())
    n, seqs = preset["request"]["n"], preset["serving"]["vllm"]["max-num-seqs"]
    assert preset["predicted"]["load"] == "0.2rps"
    # Sized to the most branches the load ran at once, in whole requests, at most the
    # largest profiled batch (16).
    assert n <= seqs <= 16 and (seqs % n == 0 or seqs == 16)
    assert preset["request"]["max_in_flight"] == -(-seqs // n)
    from tuner.core.presets import read_preset_file
    from tuner.gateway.settings import settings_from_preset

    gateway = settings_from_preset(read_preset_file(preset_file), "http://127.0.0.1:1")
    assert gateway.max_concurrent_requests == preset["request"]["max_in_flight"]


def test_frontier_over_loads_shows_switch_points_and_writes_a_report(workdir, tmp_path):
    url, spec = workdir
    result = invoke("--storage", url, "frontier", "--loads", "0.05rps:0.45rps:3", "--deadline",
                    "12s", "--spec", str(spec), "--json")
    assert result.exit_code == 0, result.output
    points = json.loads(result.output)["points"]
    assert [p["load"] for p in points] == ["0.05rps", "0.25rps", "0.45rps"]
    report = tmp_path / "loads.html"
    table = invoke("--storage", url, "frontier", "--loads", "0.05rps:0.45rps:3", "--deadline",
                   "12s", "--spec", str(spec), "--report", str(report))
    assert table.exit_code == 0, table.output
    assert "max-num-seqs" in table.output
    assert ("Switch between" in table.output
            or "The best configuration is the same at every load." in table.output)
    assert "Switch points" in report.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (("--loads", "1rps:4conc:3", "--deadline", "1s"),
     "Error: Invalid value for '--loads': load range '1rps:4conc:3': START and STOP must "
     "both be rates (rps) or both concurrencies (conc)"),
    (("--loads", "1rps:4rps:3"), "Error: --loads needs --deadline, e.g. --deadline 150ms"),
    (("--deadlines", "1s:2s:2", "--loads", "1rps:4rps:3"),
     "Error: give --deadlines, or --loads with --deadline"),
])
def test_bad_load_frontiers_are_one_line_errors(args, message):
    result = invoke("frontier", *args, catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == message


def test_bad_load_is_a_one_line_error():
    result = invoke("run", "--deadline", "1s", "--load", "2", catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: Invalid value for '--load': load '2' is not a load; write e.g. 2rps "
        "(Poisson arrivals), 4conc (4 clients) or trace:FILE")


def test_presets_import_predicts_an_edited_preset_again_and_refuses_too_many_branches(
        workdir, tmp_path):
    url, spec = workdir
    assert invoke("--storage", url, "run", "--deadline", "6s", "--spec", str(spec)).exit_code == 0
    out = tmp_path / "presets"
    invoke("--storage", url, "export", "--study", "fam-6s-q0.9", "--format", "json",
           "-o", str(out))
    (path,) = out.glob("*.preset.json")
    body = json.loads(path.read_text())
    body["request"]["n"] = 1
    path.write_text(json.dumps(body))
    result = invoke("--storage", url, "presets", "import", str(path))
    assert result.exit_code == 0 and "prediction was made again" in result.output
    stored = json.loads(invoke("--storage", url, "presets", "show", body["name"]).output)
    assert stored["predicted"]["accuracy"] != body["predicted"]["accuracy"]
    body["request"]["n"] = 9  # the profile has 8 samples per question
    path.write_text(json.dumps(body))
    refused = invoke("--storage", url, "presets", "import", str(path), catch=True)
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines()[-1].startswith(
        f"Error: preset {body['name']}: request.n is 9 but the profile has 8 samples")
    client_half = next(out.glob("*.preset.json")).with_name("x.request.json")
    client_half.write_text(json.dumps({k: body[k] for k in ("request", "predicted")}))
    half = invoke("--storage", url, "presets", "import", str(client_half), catch=True)
    assert "is the client half of a preset" in half.output

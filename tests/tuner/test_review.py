"""Figures, dashboard attributes, `latts-tune dashboard` and `latts-tune report`."""

from __future__ import annotations

import itertools
import re

import optuna
import pytest
from click.testing import CliRunner
from review_world import SYNTHETIC_DEADLINE_S, synthetic_study

from storage import Database
from tuner.cli import cli
from tuner.review.dashboard import PLOT_DATA_PREFIX, DashboardStorage, check_host, save_figures
from tuner.review.figures import latency_accuracy_figure, pareto_steps
from tuner.review.study_review import load_study, review_of, study_figures, winner_note


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('review') / 'latts.db'}"
    name = synthetic_study(url)
    return url, name, review_of(load_study(url, name), url)


def invoke(*args, catch=False):
    return CliRunner().invoke(cli, list(args), catch_exceptions=catch)


def system_attrs(study: optuna.Study) -> dict:
    return study._storage.get_study_system_attrs(study._study_id)


def names(figure) -> list[str]:
    return [trace.name for trace in figure.data]


def test_trials_figure_marks_feasible_and_draws_the_deadline(world):
    _, _, review = world
    figure = latency_accuracy_figure(review.summaries, SYNTHETIC_DEADLINE_S, review.latency,
                                     review.best)
    assert names(figure) == ["feasible", "infeasible", "best", "deadline 6 s"]
    feasible, infeasible, best, deadline = figure.data
    assert len(feasible.x) == len(review.ranked) > 0
    assert len(infeasible.x) == len(review.summaries) - len(review.ranked) > 0
    assert max(feasible.x) <= SYNTHETIC_DEADLINE_S < min(infeasible.x)
    assert list(deadline.x) == [SYNTHETIC_DEADLINE_S] * 2
    assert (best.x[0], best.y[0]) == (review.best.latency_upper_s, review.best.accuracy)
    assert best.error_x.arrayminus[0] == review.best.latency_upper_s - review.best.latency_s


def test_frontier_rises_with_the_deadline(world):
    _, _, review = world
    steps = pareto_steps(review.summaries)
    assert [s.deadline_s for s in steps] == sorted(s.deadline_s for s in steps)
    assert all(a.best.accuracy < b.best.accuracy for a, b in itertools.pairwise(steps))
    at_deadline = [s for s in steps if s.deadline_s <= SYNTHETIC_DEADLINE_S][-1]
    assert at_deadline.best.accuracy == review.best.accuracy


def test_study_figures_include_the_breakdown_of_the_best(world):
    _, _, review = world
    figures = study_figures(review)
    assert list(figures) == ["latts-trials", "latts-frontier", "latts-breakdown"]
    breakdown = figures["latts-breakdown"]
    assert names(breakdown)[:2] == ["prefill (mean)", "decode (mean)"]
    assert breakdown.data[0].y[0].startswith("best<br>")
    assert "one branch" in " ".join(breakdown.data[0].y)


def test_run_saves_figures_and_note_in_the_study(world):
    url, name, _ = world
    attrs = system_attrs(load_study(url, name))
    for graph_id in ("latts-trials", "latts-frontier", "latts-breakdown"):
        assert f"{PLOT_DATA_PREFIX}{graph_id}:0" in attrs
    note = "".join(v for k, v in sorted(attrs.items()) if k.startswith("dashboard:note_str:"))
    assert f"latts-tune export --study {name} --format vllm -o presets/" in note


def test_saved_attributes_equal_optuna_dashboards_own(world):
    from optuna_dashboard import save_note, save_plotly_graph_object

    _, _, review = world
    ours, theirs = optuna.create_study(), optuna.create_study()
    for _ in range(2):  # the second save bumps the note version and rewrites chunks
        save_figures(ours, review)
        for graph_id, figure in study_figures(review).items():
            save_plotly_graph_object(theirs, figure, graph_object_id=graph_id)
        save_note(theirs, winner_note(review))
    assert system_attrs(ours) == system_attrs(theirs)


def test_dashboard_storage_shows_constraints_and_a_feasible_best(world):
    url, name, review = world
    storage = DashboardStorage(url)
    study_id = storage.get_study_id_from_name(name)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    assert all(len(t.system_attrs["constraints"]) == 1 for t in trials)
    assert storage.get_best_trial(study_id).number == review.best.number


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::"])
def test_dashboard_refuses_a_non_loopback_host_from_the_environment(host, monkeypatch):
    monkeypatch.setenv("LATTS_TUNE_DASHBOARD_HOST", host)
    result = invoke("dashboard", catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: LATTS_TUNE_DASHBOARD_HOST={host} is not a loopback address; the dashboard "
        "binds other interfaces only with an explicit --host")


def test_dashboard_host_rules():
    assert check_host(None, None) == "127.0.0.1"
    assert check_host(None, "localhost") == "localhost"
    assert check_host("0.0.0.0", None) == "0.0.0.0"
    assert check_host("0.0.0.0", "10.0.0.1") == "0.0.0.0"


def test_dashboard_warns_on_an_explicit_public_host(monkeypatch):
    served = []
    monkeypatch.setattr("tuner.review.dashboard.serve", lambda *args: served.append(args))
    result = invoke("--storage", "sqlite://", "dashboard", "--host", "0.0.0.0", "--port",
                    "9999", catch=False)
    assert result.exit_code == 0
    assert result.output.startswith("Warning: binding 0.0.0.0:")
    assert served == [("sqlite://", "0.0.0.0", 9999)]


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_dashboard_rejects_bad_ports(port):
    result = invoke("dashboard", "--port", port, catch=True)
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.output


def test_report_is_one_offline_html_file(world, tmp_path):
    url, name, _ = world
    output = tmp_path / "report.html"
    result = invoke("--storage", url, "report", "--study", name, "-o", str(output))
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", text, re.IGNORECASE)
    assert not re.search(r"<link[^>]+href=[\"']?(https?:)?//", text, re.IGNORECASE)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    assert text.count('class="figure"') >= 5
    assert "Top 10 configurations" in text


def test_report_for_an_unknown_study_lists_the_known_ones(world, tmp_path):
    url, name, _ = world
    result = invoke("--storage", url, "report", "--study", "nope", "-o",
                    str(tmp_path / "r.html"), catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: no study named 'nope'; known studies: {name}")


def test_report_into_a_missing_folder_is_a_clear_error(world, tmp_path):
    url, name, _ = world
    output = tmp_path / "missing" / "r.html"
    result = invoke("--storage", url, "report", "--study", name, "-o", str(output), catch=True)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: cannot write {output}: folder {output.parent} does not exist; create it or "
        "pick another -o")


def test_report_of_a_study_not_made_by_latts_tune(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(storage=url, study_name="plain")
    with Database(url):
        pass
    result = invoke("--storage", url, "report", "--study", "plain", "-o",
                    str(tmp_path / "r.html"), catch=True)
    assert result.exit_code == 2
    assert "was not created by latts-tune run" in result.output


def test_report_shows_stored_validations(world, tmp_path):
    from storage import ValidationRecord, ValidationStore

    url, name, review = world
    assert invoke("--storage", url, "export", "--study", name, "--format", "json", "-o",
                  str(tmp_path)).exit_code == 0
    preset = f"{name}-t{review.best.number}"
    with Database(url) as db:
        ValidationStore(db).add(ValidationRecord(
            preset_name=preset, task="arithmetic", split="test", seed=0,
            hardware_fingerprint="f", engine_version="e", tool_version="t",
            predicted_accuracy=0.8, predicted_accuracy_low=0.7, predicted_accuracy_high=0.9,
            predicted_mean_latency_s=4.0, predicted_p50_latency_s=4.0,
            predicted_p90_latency_s=5.7, measured_accuracy=0.75, measured_accuracy_low=0.6,
            measured_accuracy_high=0.85, measured_mean_latency_s=4.2,
            measured_p50_latency_s=4.1, measured_p90_latency_s=6.1, latencies_s=(4.1,),
            correct=(True,)))
    output = tmp_path / "report.html"
    assert invoke("--storage", url, "report", "--study", name, "-o", str(output)).exit_code == 0
    text = output.read_text()
    assert "Validation (predicted vs measured)" in text
    assert f"<td>{preset}</td><td>5.700</td><td>6.100</td>" in text


def test_dashboard_breaks_exact_ties_as_run_does(tmp_path):
    # Two feasible trials with equal figures: `run` ranks N=2 before N=4 (the
    # configuration's fixed order), whatever the trial numbers say.
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.trial import create_trial

    from tuner.core.optuna_storage import open_rdb_storage
    from tuner.core.ranking import rank
    from tuner.core.trials import RESULT_ATTRS, summarize

    url = f"sqlite:///{tmp_path / 'ties.db'}"
    study = optuna.create_study(storage=open_rdb_storage(url), study_name="ties",
                                direction="maximize")
    distributions = {"model": CategoricalDistribution(["big"]),
                     "temperature": CategoricalDistribution([1.0]),
                     "branches": IntDistribution(1, 8),
                     "speculation": CategoricalDistribution(["none"])}
    for branches in (4, 2):
        trial = create_trial(
            params={"model": "big", "temperature": 1.0, "branches": branches,
                    "speculation": "none"},
            distributions=distributions, value=0.8,
            user_attrs={name: 0.5 for name in RESULT_ATTRS} | {"accuracy": 0.8},
            system_attrs={"constraints:latency": -0.1})
        study.add_trial(trial)
    trials = study.get_trials(deepcopy=False)
    best = rank(summarize(t) for t in trials)[0]
    assert best.configuration.branches == 2 and best.number == 1
    storage = DashboardStorage(url)
    assert storage.get_best_trial(storage.get_study_id_from_name("ties")).number == best.number

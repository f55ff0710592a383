"""The Optuna study finds the simulator's exhaustive optimum and stores real trials."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from tuner_synthetic import family_profile

from storage.errors import UserInputError
from tuner.core import study as study_module
from tuner.core.configuration import LatencyObjective
from tuner.core.durations import format_duration
from tuner.core.frontier import exhaustive_optimum, frontier
from tuner.core.ranking import NoFeasibleConfiguration, feasible_range_s
from tuner.core.simulator import Simulator
from tuner.core.space import build_space
from tuner.core.spec import StudySpec
from tuner.core.study import StudySettings, run_study

SPEC = StudySpec(name="fam", task="arithmetic")
LATENCY = LatencyObjective()


@pytest.fixture(scope="module")
def world():
    profile = family_profile(questions=30, k=8)
    return profile, build_space(profile, SPEC), Simulator(profile, SPEC.task)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'study.db'}"


def latencies(world):
    _, space, simulator = world
    return np.array([simulator.score(c, LATENCY).latency_upper_s
                     for c in space.configurations()])


def deadlines(world, count: int) -> list[float]:
    spread = latencies(world)
    return list(np.linspace(spread.min() * 1.001, spread.max() * 1.01, count))


def settings_for(world, deadline_s, latency=LATENCY):
    return StudySettings.create(SPEC, world[0], deadline_s, latency)


def test_best_trial_is_the_exhaustive_optimum(world, url):
    profile, space, simulator = world
    for deadline_s in deadlines(world, 6):
        outcome = run_study(url, space, simulator, settings_for(world, deadline_s))
        optimum = exhaustive_optimum(space, simulator, deadline_s, LATENCY)
        assert outcome.best.configuration == optimum.configuration
        assert outcome.best.accuracy == optimum.accuracy
        assert outcome.best.latency_upper_s <= deadline_s
        assert outcome.best.latency_s < outcome.best.latency_upper_s  # the margin
        assert outcome.exhaustive and outcome.trials == len(space)


def test_runner_ups_are_best_of_their_kind(world, url):
    _, space, simulator = world
    deadline_s = deadlines(world, 3)[1]
    outcome = run_study(url, space, simulator, settings_for(world, deadline_s))
    results = [simulator.score(c, LATENCY) for c in space.configurations()]
    plain = [r for r in results
             if r.configuration.speculation is None and r.latency_upper_s <= deadline_s]
    single = [r for r in results
              if r.configuration.branches == 1 and r.latency_upper_s <= deadline_s]
    assert outcome.no_speculation.accuracy == max(r.accuracy for r in plain)
    assert outcome.no_speculation.configuration.speculation is None
    assert outcome.single_branch.accuracy == max(r.accuracy for r in single)
    assert outcome.single_branch.configuration.branches == 1


def test_rerun_reuses_the_study(world, url):
    _, space, simulator = world
    deadline_s = deadlines(world, 3)[1]
    first = run_study(url, space, simulator, settings_for(world, deadline_s))
    second = run_study(url, space, simulator, settings_for(world, deadline_s))
    assert first.new_trials == len(space) and second.new_trials == 0
    assert first.study_name == second.study_name
    assert second.best == first.best


def test_trials_hold_predictions_and_latency_constraint(world, url):
    _, space, simulator = world
    deadline_s = deadlines(world, 3)[1]
    outcome = run_study(url, space, simulator, settings_for(world, deadline_s))
    stored = optuna.load_study(study_name=outcome.study_name, storage=url)
    for trial in stored.trials:
        assert trial.value == round(trial.user_attrs["accuracy"], 4)
        assert trial.constraints["latency"] == pytest.approx(
            trial.user_attrs["latency_upper_s"] - deadline_s)
    assert stored.best_trial.user_attrs["accuracy"] == outcome.best.accuracy


def test_same_name_with_other_settings_is_refused(world, url):
    _, space, simulator = world
    run_study(url, space, simulator, settings_for(world, 5.0), study_name="s")
    with pytest.raises(UserInputError, match="exists with different deadline_s"):
        run_study(url, space, simulator, settings_for(world, 6.0), study_name="s")


def test_no_feasible_configuration_names_the_fastest(world, url):
    _, space, simulator = world
    results = [simulator.score(c, LATENCY) for c in space.configurations()]
    fastest = min(results, key=lambda r: r.latency_upper_s)
    deadline_s = fastest.latency_s / 2
    with pytest.raises(NoFeasibleConfiguration) as caught:
        run_study(url, space, simulator, settings_for(world, deadline_s))
    assert str(caught.value) == (
        f"no configuration meets the {format_duration(deadline_s)} deadline; the fastest is "
        f"{fastest.configuration.label()} with p90 latency "
        f"{format_duration(fastest.latency_s)} (at most "
        f"{format_duration(fastest.latency_upper_s)} with 90% confidence); allow at least "
        f"{format_duration(fastest.latency_upper_s)}"
    )


def test_cutoff_study_matches_exhaustive_optimum(world, url):
    _, space, simulator = world
    latency = LatencyObjective(cutoff=True)
    deadline_s = deadlines(world, 3)[0]
    outcome = run_study(url, space, simulator, settings_for(world, deadline_s, latency))
    optimum = exhaustive_optimum(space, simulator, deadline_s, latency)
    assert outcome.best.configuration == optimum.configuration
    assert outcome.study_name.endswith("-q0.9-cutoff")


def test_tpe_search_for_large_spaces_returns_a_feasible_best(world, url, monkeypatch):
    _, space, simulator = world
    monkeypatch.setattr(study_module, "ENUMERATION_LIMIT", 0)
    deadline_s = deadlines(world, 3)[1]
    outcome = run_study(url, space, simulator, settings_for(world, deadline_s), max_trials=30)
    assert not outcome.exhaustive
    assert outcome.best.latency_upper_s <= deadline_s
    assert outcome.trials <= 30


def test_frontier_accuracy_never_drops_as_the_deadline_grows(world):
    _, space, simulator = world
    points = frontier(space, simulator, deadlines(world, 8), LATENCY)
    accuracies = [p.best.accuracy for p in points]
    assert accuracies == sorted(accuracies)
    assert not points[0].changed
    for before, after in zip(points, points[1:], strict=False):
        assert after.changed == (after.best.configuration != before.best.configuration)


def test_reused_study_ranks_only_the_current_space(world, url):
    profile, space, simulator = world
    deadline_s = deadlines(world, 3)[2]
    wide = run_study(url, space, simulator, settings_for(world, deadline_s))
    assert wide.best.configuration.model == "big"
    narrow_space = build_space(profile, StudySpec(name="fam", task="arithmetic",
                                                  models=["small"]))
    narrow = run_study(url, narrow_space, simulator, settings_for(world, deadline_s))
    assert narrow.study_name == wide.study_name and narrow.new_trials == 0
    assert {s.configuration.model for s in narrow.ranked} == {"small"}


@pytest.mark.parametrize(("deadline_s", "latency", "name"), [
    (2.0, LatencyObjective(), "fam-2s-q0.9"),
    (0.5, LatencyObjective("mean"), "fam-500ms-mean"),
    (1.25, LatencyObjective(quantile=0.95, cutoff=True), "fam-1.25s-q0.95-cutoff"),
])
def test_default_study_names(deadline_s, latency, name):
    assert study_module.study_name_for("fam", deadline_s, latency) == name


def test_feasible_range_ends_where_accuracy_stops_rising():
    from types import SimpleNamespace as Scored

    scored = [Scored(accuracy=accuracy, latency_upper_s=bound_s) for accuracy, bound_s in
              ((0.70, 1.0), (0.90, 3.0), (0.906, 2.5), (0.91, 9.0))]
    assert feasible_range_s(scored) == (1.0, 2.5)  # 0.906 is within half a point of 0.91

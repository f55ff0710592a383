"""Measure-mode studies on a scripted engine: seeding, ask/tell, constraint, resuming."""

from __future__ import annotations

import pytest
from tuner_synthetic import HARDWARE, family_profile

from profilers import EnginePool
from storage import Database, ProfileRecords, ProfileStore
from tests.profilers.fake_streaming import ScriptedEngine
from tuner.core.configuration import LatencyObjective
from tuner.core.measure import MeasureSettings, measure_study, seed_configurations
from tuner.core.operations import open_workspace
from tuner.core.spec import StudySpec
from tuner.core.study import StudySettings

PROFILE = family_profile(questions=20, k=8)
SPEC = StudySpec(name="fam", task="arithmetic")
LATENCY = LatencyObjective()


@pytest.fixture
def database(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'latts.db'}")
    ProfileStore(db).write(ProfileRecords(
        hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
        acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    yield db
    db.close()


def pool_of(started: list, script: str = "#7") -> EnginePool:
    def start(model, speculative):
        started.append((model, speculative))
        return ScriptedEngine([script])

    return EnginePool(start, max_live=2)


def test_seeds_are_the_best_predicted_feasible_configurations(database):
    workspace = open_workspace(database, SPEC)
    settings = StudySettings.create(SPEC, workspace.profile, 6.0, LATENCY)
    seeds = seed_configurations(workspace, settings, 4)
    assert len(seeds) == 4
    keys = [c.engine_key() for c in seeds]
    # grouped by engine: an engine key never reappears after another one
    assert keys == sorted(keys, key=keys.index)


def test_budget_of_trials_is_measured_and_a_rerun_continues(database):
    started: list = []
    measuring = MeasureSettings(budget_trials=3, questions=3)
    with pool_of(started) as pool:
        first = measure_study(database, SPEC, 6.0, LATENCY, measuring, pool)
    assert len(first.trials) == 3 and first.new_trials == 3
    assert first.study_name == "fam-6s-q0.9-measure"
    assert all(t.latency_s > 0 and t.feasible for t in first.trials)  # scripted: instant
    assert first.best is not None
    more = MeasureSettings(budget_trials=5, questions=3)
    with pool_of(started) as pool:
        second = measure_study(database, SPEC, 6.0, LATENCY, more, pool)
    assert second.new_trials == 2 and len(second.trials) == 5
    assert [t.number for t in second.trials][:3] == [t.number for t in first.trials]
    configs = [t.configuration for t in second.trials]
    assert len(set(configs)) == len(configs)  # repeats are pruned, never re-measured


def test_measured_latency_sets_the_constraint(database):
    measuring = MeasureSettings(budget_trials=1, questions=2)
    with pool_of([]) as pool:
        outcome = measure_study(database, SPEC, 1e-9, LATENCY, measuring, pool,
                                study_name="tight")
    # the simulator predicts nothing feasible at 1 ns, so no seeds: TPE picks the trial
    assert len(outcome.trials) == 1 and not outcome.trials[0].feasible
    assert outcome.best is None


def test_a_rerun_with_other_measure_settings_is_refused(database):
    from storage import UserInputError

    with pool_of([]) as pool:
        measure_study(database, SPEC, 6.0, LATENCY, MeasureSettings(1, 2), pool)
        with pytest.raises(UserInputError, match="measure_questions"):
            measure_study(database, SPEC, 6.0, LATENCY, MeasureSettings(1, 3), pool)


def test_a_trial_left_running_by_an_interrupt_is_failed_and_queued_again(database):
    import optuna

    from tuner.core.study import open_rdb_storage

    with pool_of([]) as pool:
        measure_study(database, SPEC, 6.0, LATENCY, MeasureSettings(1, 2), pool)
        study = optuna.load_study(study_name="fam-6s-q0.9-measure",
                                  storage=open_rdb_storage(database.url))
        stuck = study.ask()
        config = open_workspace(database, SPEC).space.suggest(stuck)  # killed after this
        outcome = measure_study(database, SPEC, 6.0, LATENCY, MeasureSettings(4, 2), pool)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[stuck.number] == optuna.trial.TrialState.FAIL
    assert config in [t.configuration for t in outcome.trials]


def test_run_in_measure_mode_prints_measured_trials(database, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tuner.cli import cli
    from tuner.cli import common as cli_common

    monkeypatch.setattr(cli_common, "measure_engine_pool", lambda: pool_of([]))
    spec = tmp_path / "fam.yaml"
    spec.write_text("name: fam\ntask: arithmetic\n")
    result = CliRunner().invoke(cli, ["--storage", database.url, "run", "--deadline", "6s",
                                      "--spec", str(spec), "--mode", "measure",
                                      "--budget-trials", "2", "--questions", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Measured trials for a 6s deadline" in result.stdout
    assert "measured trials (2 new)" in " ".join(result.stdout.split())

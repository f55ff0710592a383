"""`latts-tune worker`: exact budgets, heartbeats, a killed worker's trial failed and retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState
from tuner_synthetic import HARDWARE, family_profile

from storage import Database, ProfileRecords, ProfileStore
from tuner.cli import cli
from tuner.core.trials import RESULT_ATTRS
from tuner.core.workers import WORKER_ATTR

REPO = Path(__file__).resolve().parents[2]
PROFILE = family_profile(questions=20, k=8)
BUDGET = 60
WORKER_TIMEOUT_S = 90


def _fill(url: str, tmp_path: Path) -> Path:
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
            acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    spec = tmp_path / "fam.yaml"
    spec.write_text("name: fam\ntask: arithmetic\n")
    return spec


def _worker_args(url: str, spec: Path, *extra: str) -> list[str]:
    return ["--storage", url, "worker", "--study", "fam-workers", "--spec", str(spec),
            "--heartbeat-seconds", "1", "--grace-seconds", "2", *extra]


def _trials(storage) -> list[optuna.trial.FrozenTrial]:
    """All trials of the workers' study; `storage` a URL or an open RDBStorage."""
    study = optuna.load_study(study_name="fam-workers", storage=storage)
    return study.get_trials(deepcopy=False)


def _states(trials) -> dict[TrialState, int]:
    counts: dict[TrialState, int] = {}
    for trial in trials:
        counts[trial.state] = counts.get(trial.state, 0) + 1
    return counts


def test_worker_runs_the_exact_budget_and_a_second_worker_joins(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    spec = _fill(url, tmp_path)
    first = CliRunner().invoke(cli, _worker_args(url, spec, "--deadline", "6s",
                                                 "--n-trials", "12"),
                               catch_exceptions=False)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(cli, _worker_args(url, spec), catch_exceptions=False)
    assert second.exit_code == 0
    assert "0 trials completed" in second.output
    assert "has 12/12 complete trials" in second.output
    trials = _trials(url)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 12
    assert all(t.user_attrs[WORKER_ATTR].endswith(f":{os.getpid()}") for t in complete)


def test_worker_refuses_another_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    spec = _fill(url, tmp_path)
    CliRunner().invoke(cli, _worker_args(url, spec, "--deadline", "6s", "--n-trials", "3"),
                       catch_exceptions=False)
    result = CliRunner().invoke(cli, _worker_args(url, spec, "--n-trials", "5"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: study 'fam-workers' has a budget of 3 trials; drop --n-trials or pass "
        "--n-trials 3")


def _start_worker(url: str, spec: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from tuner.cli import main; main()",
               *_worker_args(url, spec, "--deadline", "6s", "--n-trials", str(BUDGET),
                             "--min-trial-seconds", "0.15")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("w") as output:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=output,
                                stderr=subprocess.STDOUT)


def _kill_mid_trial(storage, victim: subprocess.Popen) -> int:
    """SIGKILL `victim` while a trial of its is RUNNING and scored but not yet told.

    The victim is stopped (SIGSTOP) before looking, so the trial seen RUNNING is still
    running when the kill lands. A scored trial has all its params, so its retry runs the
    same configuration and must complete.
    """
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while time.monotonic() < deadline:
        assert victim.poll() is None, "the victim finished before it could be killed"
        os.kill(victim.pid, signal.SIGSTOP)
        mine = [t.number for t in _running(storage)
                if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}")
                and "accuracy" in t.user_attrs]
        if mine:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            return mine[0]
        os.kill(victim.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the victim never held a running trial")


def _running(storage):
    try:
        return [t for t in _trials(storage) if t.state == TrialState.RUNNING]
    except KeyError:  # the study is not created yet
        return []


@pytest.mark.postgres
def test_three_workers_finish_the_budget_with_one_killed_mid_trial(postgres_url, tmp_path):
    spec = _fill(postgres_url, tmp_path)
    started = time.perf_counter()
    logs = [tmp_path / f"worker{index}.log" for index in range(3)]
    workers = [_start_worker(postgres_url, spec, log) for log in logs]
    storage = optuna.storages.RDBStorage(postgres_url)
    killed = _kill_mid_trial(storage, workers[0])
    for survivor, log in zip(workers[1:], logs[1:], strict=True):
        assert survivor.wait(timeout=WORKER_TIMEOUT_S) == 0, log.read_text()
    print(f"\n3 workers, {BUDGET} trials, one killed: {time.perf_counter() - started:.1f} s")

    storage.engine.dispose()
    trials = _trials(postgres_url)
    states = _states(trials)
    assert states.get(TrialState.COMPLETE) == BUDGET
    assert not states.get(TrialState.RUNNING) and not states.get(TrialState.WAITING)
    by_number = {t.number: t for t in trials}
    assert sorted(by_number) == list(range(len(trials)))  # no trial row lost
    assert by_number[killed].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert retries[0].params == by_number[killed].params
    assert not retries[0].user_attrs[WORKER_ATTR].endswith(f":{workers[0].pid}")
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            assert trial.values is not None and set(RESULT_ATTRS) <= set(trial.user_attrs)
            assert set(trial.constraints) == {"latency"}


@pytest.mark.parametrize("failed_while", ["suggesting", "scoring"])
def test_a_trial_failed_as_stale_by_another_worker_is_left_to_its_retry(tmp_path, monkeypatch,
                                                                        failed_while):
    """A starved worker (no heartbeat within the grace period) finds its trial failed by
    another worker: it goes on without a traceback, and records nothing over the FAIL."""
    from tuner.core import workers

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}",
                                         heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="stale")
    trial = study.ask()

    def objective(trial, space, simulator, settings):
        if failed_while == "suggesting":
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            trial.suggest_int("branches", 1, 16)  # the write another worker's FAIL refuses
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return 0.5

    monkeypatch.setattr(workers, "objective", objective)
    assert workers._run_trial(study, trial, None, None, None, 0.0) == TrialState.FAIL
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].value is None

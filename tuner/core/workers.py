"""Study workers: any number of processes running one study's trials on a shared database.

Each worker asks Optuna for one trial at a time (constrained TPE with the constant liar, so
concurrent trials spread out), scores it with the same objective as `latts-tune run`
(`tuner.core.study.objective`) and tells the result. While a trial runs, a thread records its
heartbeat; a RUNNING trial whose heartbeat is older than the grace period (its worker died)
is failed by the next worker that looks, and Optuna's RetryHeartbeatStaleTrialCallback
queues a copy (system attribute ``failed_trial`` = the failed trial's number) that the
next free worker runs.

The budget is exact. Under a study-wide lock (a PostgreSQL advisory lock; a lock file
beside a SQLite database) a worker starts a trial only while COMPLETE + RUNNING + WAITING
trials are below the budget (or a WAITING retry is queued), so concurrent workers never
overshoot. A worker leaves once the study has `budget` COMPLETE trials and waits while
others' trials are in flight, since one may still fail and need its retry run.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.errors import UserInputError
from tuner.core.configuration import LatencyObjective
from tuner.core.optuna_storage import open_rdb_storage
from tuner.core.simulator import Simulator
from tuner.core.space import SearchSpace
from tuner.core.study import StudySettings, check_settings, objective, stored_settings

logger = logging.getLogger(__name__)

BUDGET_ATTR = "trial_budget"
WORKER_ATTR = "worker"  # user attribute: "hostname:pid" of the worker that ran the trial
_IN_FLIGHT = (TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs: heartbeat timing (whole seconds, as Optuna wants) and retries."""

    heartbeat_interval_s: int = 10
    grace_period_s: int = 30
    max_retry: int = 3
    min_trial_s: float = 0.0  # pacing: a trial holds its slot at least this long

    def __post_init__(self) -> None:
        if self.grace_period_s <= self.heartbeat_interval_s:
            raise UserInputError(
                f"--grace-seconds ({self.grace_period_s}) must exceed --heartbeat-seconds "
                f"({self.heartbeat_interval_s}), or live workers' trials count as dead"
            )


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did and where the study stands."""

    worker: str
    study_name: str
    completed: int  # trials this worker completed
    pruned: int  # suggestions outside the profiled space
    study_complete: int
    budget: int


def quiet_worker_warnings() -> None:
    """Hide Optuna's warnings that heartbeats are experimental and meant for optimize()."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def worker_id() -> str:
    """This process as "hostname:pid", stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def open_worker_study(storage_url: str, study_name: str,
                      options: WorkerOptions) -> optuna.Study:
    """Create or load the study on a storage with heartbeats and stale-trial retries."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=options.max_retry)
    storage = open_rdb_storage(storage_url, heartbeat_interval=options.heartbeat_interval_s,
                               grace_period=options.grace_period_s,
                               heartbeat_stale_trial_callback=retry)
    sampler = optuna.samplers.TPESampler(constant_liar=True)
    return optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                               sampler=sampler, load_if_exists=True)


def study_exists(storage_url: str, study_name: str) -> bool:
    """Whether the database holds a study of that name."""
    return study_name in optuna.get_all_study_names(storage=open_rdb_storage(storage_url))


def run_worker(study: optuna.Study, space: SearchSpace, simulator: Simulator,
               settings: StudySettings, n_trials: int | None, default_budget: int,
               min_trial_s: float = 0.0) -> WorkerReport:
    """Run trials until the study has its budget of COMPLETE trials; returns our share.

    `n_trials` None keeps the stored budget (`default_budget` for a new study);
    `min_trial_s` paces trials (each stays RUNNING at least that long).
    """
    me = worker_id()
    tally: Counter = Counter()
    with _study_lock_factory(study) as lock:
        with lock():  # the first worker stores settings and budget; the others check them
            check_settings(study, settings)
            budget = _settle_budget(study, n_trials, default_budget)
        while True:
            with lock():
                optuna.storages.fail_stale_trials(study)
                trial, complete = _reserve(study, budget, me)
            if trial is None and complete >= budget:
                break
            if trial is None:
                time.sleep(_poll_s(study))
                continue
            tally[_run_trial(study, trial, space, simulator, settings, min_trial_s)] += 1
    logger.info("worker %s: %d complete, %d pruned; study %s has %d/%d", me,
                tally[TrialState.COMPLETE], tally[TrialState.PRUNED], study.study_name,
                complete, budget)
    return WorkerReport(me, study.study_name, tally[TrialState.COMPLETE],
                        tally[TrialState.PRUNED], complete, budget)


def stored_latency(study: optuna.Study) -> tuple[float, LatencyObjective]:
    """(deadline in seconds, latency objective) a study was created with."""
    settings = stored_settings(study)
    return settings.deadline_s, settings.objective


def _settle_budget(study: optuna.Study, requested: int | None, default: int) -> int:
    stored = study.user_attrs.get(BUDGET_ATTR)
    if stored is not None and requested is not None and requested != stored:
        raise UserInputError(f"study {study.study_name!r} has a budget of {stored} trials; "
                             f"drop --n-trials or pass --n-trials {stored}")
    budget = int(stored if stored is not None else (requested or default))
    if stored is None:
        study.set_user_attr(BUDGET_ATTR, budget)
    return budget


def _reserve(study: optuna.Study, budget: int, me: str) -> tuple[optuna.Trial | None, int]:
    """(a started trial or None, COMPLETE count); call under the study lock."""
    states = Counter(t.state for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, *_IN_FLIGHT)))
    complete = states[TrialState.COMPLETE]
    if complete >= budget or (not states[TrialState.WAITING]
                              and sum(states.values()) >= budget):
        return None, complete
    trial = study.ask()  # pops a WAITING retry first
    # The first heartbeat before anything else: a RUNNING trial without one is never failed.
    _storage(study).record_heartbeat(trial._trial_id)
    trial.set_user_attr(WORKER_ATTR, me)
    return trial, complete


def _run_trial(study: optuna.Study, trial: optuna.Trial, space: SearchSpace,
               simulator: Simulator, settings: StudySettings,
               min_trial_s: float) -> TrialState:
    started = time.monotonic()
    with _heartbeat(study, trial):
        try:
            value = objective(trial, space, simulator, settings)
            time.sleep(max(0.0, started + min_trial_s - time.monotonic()))
        except optuna.TrialPruned:
            return _tell(study, trial, TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:
            return _taken_over(trial)
        except BaseException:
            _tell(study, trial, TrialState.FAIL)
            raise
    return _tell(study, trial, TrialState.COMPLETE, value)


def _tell(study: optuna.Study, trial: optuna.Trial, state: TrialState,
          value: float | None = None) -> TrialState:
    if _storage(study).get_trial(trial._trial_id).state.is_finished():
        return _taken_over(trial)
    study.tell(trial, value, state=state)
    return state


def _taken_over(trial: optuna.Trial) -> TrialState:
    """Another worker failed this trial as stale (this worker was starved past the grace
    period) and queued its retry: nothing left to record here, and the worker goes on."""
    logger.warning("trial %d was failed as stale by another worker while this one ran it; "
                   "its retry runs elsewhere", trial.number)
    return TrialState.FAIL


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    storage = _storage(study)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storage.get_heartbeat_interval()):
            storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, name="latts-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _storage(study: optuna.Study) -> optuna.storages.RDBStorage:
    storage = getattr(study._storage, "_backend", study._storage)
    assert isinstance(storage, optuna.storages.RDBStorage)  # workers open only RDB storage
    return storage


def _poll_s(study: optuna.Study) -> float:
    # Waiting for others' trials: look again a few times per heartbeat interval.
    return max(0.1, (_storage(study).get_heartbeat_interval() or 1) / 4)


@contextmanager
def _study_lock_factory(study: optuna.Study) -> Iterator:
    """Yields `lock()`: a context manager serialising trial reservation across workers."""
    storage = _storage(study)
    dialect = storage.engine.dialect.name
    if dialect == "postgresql":
        key = int.from_bytes(hashlib.sha1(f"latts-tune:{study.study_name}".encode())
                             .digest()[:8], "big", signed=True)
        yield lambda: _advisory_lock(storage, key)
    elif dialect == "sqlite":
        path = make_url(storage.url).database or ""
        with open(f"{path}.{study.study_name}.lock", "a+") as handle:
            yield lambda: _file_lock(handle)
    else:
        logger.warning("no study lock on %s: concurrent workers may overshoot the budget",
                       dialect)
        yield _no_lock


@contextmanager
def _advisory_lock(storage: optuna.storages.RDBStorage, key: int) -> Iterator[None]:
    # Transaction-scoped: released at commit, and by the server if this worker dies.
    with storage.engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield


@contextmanager
def _file_lock(handle) -> Iterator[None]:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _no_lock() -> Iterator[None]:
    yield

"""The Optuna study: maximise predicted accuracy subject to latency statistic <= deadline.

Trials are scored in memory (the simulator takes milliseconds) by `objective`, then written
to the project database in one pass with `Study.add_trials`: real trials with params,
values, user attributes and constraints, but without Optuna's per-call round trips. When
the space has at most `ENUMERATION_LIMIT` configurations every one of them is a trial, so
the best feasible trial is the simulator's exact optimum; larger spaces use constrained TPE
seeded with simple configurations. Re-running a study scores only what it lacks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage.errors import UserInputError
from storage.records import ProfileSet
from tuner.durations import format_duration
from tuner.simulator import Configuration, LatencyObjective, SimulationResult, Simulator
from tuner.space import (
    SearchSpace,
    configuration_from_params,
    configuration_params,
)
from tuner.spec import StudySpec
from tuner.trial_writer import add_finished_trials

logger = logging.getLogger(__name__)

ENUMERATION_LIMIT = 5000
DEFAULT_TPE_TRIALS = 500
RESULT_ATTRS = (
    "accuracy", "accuracy_low", "accuracy_high", "latency_s", "mean_latency_s",
    "mean_generated_tokens", "prefill_s", "decode_s", "tokens_per_step",
)


class NoFeasibleConfiguration(UserInputError):
    """No configuration meets the deadline; the message names the fastest one."""


@dataclass(frozen=True)
class TrialSummary:
    """A scored configuration as stored in the study."""

    number: int
    configuration: Configuration
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    latency_s: float
    mean_latency_s: float
    mean_generated_tokens: float
    prefill_s: float
    decode_s: float
    tokens_per_step: float
    feasible: bool


@dataclass(frozen=True)
class StudyOutcome:
    """What a study found: the best feasible trials and comparison points."""

    study_name: str
    storage_url: str
    deadline_s: float
    objective: LatencyObjective
    ranked: tuple[TrialSummary, ...]  # feasible, best first
    no_speculation: TrialSummary | None
    single_branch: TrialSummary | None
    trials: int
    new_trials: int
    exhaustive: bool

    @property
    def best(self) -> TrialSummary:
        return self.ranked[0]


@dataclass(frozen=True)
class StudySettings:
    """Everything a trial's score depends on besides its configuration (stored with the
    study, so a rerun cannot mix settings)."""

    deadline_s: float
    statistic: str
    quantile: float
    cutoff: bool
    spec_name: str
    task: str
    split: str | None
    hardware_fingerprint: str
    engine_version: str
    profile_digest: str

    @property
    def objective(self) -> LatencyObjective:
        return LatencyObjective(self.statistic, self.quantile, self.cutoff)

    @classmethod
    def create(cls, spec: StudySpec, profile: ProfileSet, deadline_s: float,
               latency: LatencyObjective) -> StudySettings:
        return cls(
            deadline_s=deadline_s, statistic=latency.statistic, quantile=latency.quantile,
            cutoff=latency.cutoff, spec_name=spec.name, task=spec.task, split=spec.split,
            hardware_fingerprint=profile.hardware.fingerprint,
            engine_version=profile.engine_version, profile_digest=profile_digest(profile),
        )


def study_name_for(spec_name: str, deadline_s: float, objective: LatencyObjective) -> str:
    """Default study name, e.g. "testbed-2s-q0.9" or "testbed-500ms-mean"."""
    deadline = f"{deadline_s * 1000:g}ms" if deadline_s < 1 else f"{deadline_s:g}s"
    return f"{spec_name}-{deadline}-{objective.tag()}"


def profile_digest(profile: ProfileSet) -> str:
    """A short fingerprint of a profile's contents, so a study never mixes two profiles."""
    parts = (
        profile.hardware.fingerprint, profile.engine_version, len(profile.cost_points),
        len(profile.acceptance), len(profile.accuracy),
        sum(s.generated_tokens for s in profile.accuracy),
        round(sum(p.seconds_median for p in profile.cost_points), 9),
        sum(r.num_accepted_tokens for r in profile.acceptance),
    )
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def objective(trial: optuna.Trial, space: SearchSpace, simulator: Simulator,
              settings: StudySettings) -> float:
    """Suggest, score, record, constrain: predicted accuracy to maximise."""
    config = space.suggest(trial)
    result = simulator.score(config, settings.objective, settings.deadline_s)
    for name in RESULT_ATTRS:
        trial.set_user_attr(name, getattr(result, name))
    trial.set_constraint("latency", result.latency_s - settings.deadline_s)
    return result.accuracy


def open_rdb_storage(url: str, **options) -> optuna.storages.RDBStorage:
    """Optuna's storage on the project database (WAL + normal sync on SQLite for speed).

    `options` go to RDBStorage (e.g. heartbeat_interval, grace_period).
    """
    storage = optuna.storages.RDBStorage(url, **options)
    if storage.engine.dialect.name == "sqlite":
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_fast_writes)
        storage.engine.dispose()  # reconnect through the listener
    return storage


def _sqlite_fast_writes(dbapi_connection, connection_record) -> None:
    # One fsync per trial made 240 trials take ~6 s; WAL with synchronous=NORMAL stays
    # crash-safe (no corruption) and writes them in about a second.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def run_study(
    storage_url: str,
    space: SearchSpace,
    simulator: Simulator,
    settings: StudySettings,
    *,
    study_name: str | None = None,
    max_trials: int | None = None,
    on_finish: Callable[[optuna.Study, StudySettings, list[FrozenTrial]], None] | None = None,
) -> StudyOutcome:
    """Create or resume the study and return its outcome; NoFeasibleConfiguration if none.

    `on_finish(study, settings, trials)` runs once the trials are stored (e.g. to save
    dashboard figures), with the completed trials of the current space.
    """
    name = study_name or study_name_for(settings.spec_name, settings.deadline_s,
                                        settings.objective)
    study = optuna.create_study(storage=open_rdb_storage(storage_url), study_name=name,
                                direction="maximize", load_if_exists=True)
    _check_settings(study, settings)
    existing = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    configs = space.configurations()
    exhaustive = len(configs) <= ENUMERATION_LIMIT
    if exhaustive:
        done = {configuration_from_params(t.params) for t in existing}
        new = _score_in_memory(space, simulator, settings,
                               [c for c in configs if c not in done], sampler=None)
    else:
        new = _search_tpe(space, simulator, settings, existing, max_trials or DEFAULT_TPE_TRIALS)
    add_finished_trials(study, new)
    # A reused study may hold trials of a wider spec: rank only the current space.
    in_space = set(configs)
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if configuration_from_params(t.params) in in_space]
    logger.info("study %s: %d trials (%d new)", name, len(trials), len(new))
    if on_finish is not None:
        on_finish(study, settings, trials)
    return _outcome(name, storage_url, settings, trials, len(new), exhaustive)


def _check_settings(study: optuna.Study, settings: StudySettings) -> None:
    check_study_attrs(study, asdict(settings))


def check_study_attrs(study: optuna.Study, wanted: dict) -> None:
    """Store `wanted` on a new study; refuse a stored study whose attributes differ."""
    stored = study.user_attrs
    if not stored:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    differing = [k for k, v in wanted.items() if stored.get(k) != v]
    if differing:
        raise UserInputError(
            f"study {study.study_name!r} exists with different {', '.join(differing)} "
            f"({', '.join(f'{k}={stored.get(k)!r}' for k in differing)}); "
            "pass another --study-name"
        )


def _score_in_memory(space, simulator, settings, configs: list[Configuration],
                     sampler) -> list[FrozenTrial]:
    memory = optuna.create_study(direction="maximize",
                                 sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    for config in configs:
        memory.enqueue_trial(configuration_params(config))
    memory.optimize(lambda trial: objective(trial, space, simulator, settings),
                    n_trials=len(configs))
    return memory.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _search_tpe(space, simulator, settings, existing: list[FrozenTrial],
                n_trials: int) -> list[FrozenTrial]:
    memory = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.TPESampler(seed=0))
    memory.add_trials(existing)
    for config in _seed_guesses(space):
        memory.enqueue_trial(configuration_params(config), skip_if_exists=True)
    memory.optimize(lambda trial: objective(trial, space, simulator, settings),
                    n_trials=max(0, n_trials - len(existing)))
    return [t for t in memory.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number >= len(existing)]


def _seed_guesses(space: SearchSpace) -> Iterable[Configuration]:
    # Corners worth knowing at once: one branch and all branches, with and without each
    # draft at its shortest and longest draft length.
    for entry in space.models:
        for temperature in entry.temperatures:
            for n in sorted({entry.min_branches, entry.max_branches}):
                yield Configuration(entry.model, n, None, 0, temperature)
                for draft, gammas in entry.drafts:
                    for gamma in sorted({gammas[0], gammas[-1]}):
                        yield Configuration(entry.model, n, draft, gamma, temperature)


def summarize(trial: FrozenTrial) -> TrialSummary:
    """The stored figures of a completed trial."""
    attrs = trial.user_attrs
    return TrialSummary(
        number=trial.number,
        configuration=configuration_from_params(trial.params),
        feasible=all(value <= 0 for value in trial.constraints.values()),
        **{name: float(attrs[name]) for name in RESULT_ATTRS},
    )


def rank(summaries: Iterable[TrialSummary]) -> list[TrialSummary]:
    """Feasible trials, best first: higher accuracy, then lower latency, then config order."""
    feasible = [s for s in summaries if s.feasible]
    return sorted(feasible, key=lambda s: (-s.accuracy, s.latency_s, s.configuration.sort_key()))


def _outcome(name, storage_url, settings, trials, new_trials, exhaustive) -> StudyOutcome:
    summaries = [summarize(t) for t in trials]
    ranked = rank(summaries)
    if not ranked:
        raise no_feasible_error(summaries, settings.deadline_s, settings.objective)
    return StudyOutcome(
        study_name=name,
        storage_url=storage_url,
        deadline_s=settings.deadline_s,
        objective=settings.objective,
        ranked=tuple(ranked),
        no_speculation=next((s for s in ranked if s.configuration.draft is None), None),
        single_branch=next((s for s in ranked if s.configuration.branches == 1), None),
        trials=len(trials),
        new_trials=new_trials,
        exhaustive=exhaustive,
    )


def no_feasible_error(summaries, deadline_s: float,
                      latency: LatencyObjective) -> NoFeasibleConfiguration:
    """The error naming the fastest configuration and its latency statistic."""
    fastest = min(summaries, key=lambda s: (s.latency_s, s.configuration.sort_key()))
    return NoFeasibleConfiguration(
        f"no configuration meets the {format_duration(deadline_s)} deadline; the fastest is "
        f"{fastest.configuration.label()} with {latency.describe()} "
        f"{format_duration(fastest.latency_s)}; allow at least that much"
    )


def load_trial(storage_url: str, study_name: str,
               trial_number: int | None = None) -> tuple[StudySettings, TrialSummary]:
    """(settings, summary) of `trial_number`, or of the best feasible trial when None."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_rdb_storage(storage_url))
    except KeyError as error:
        raise UserInputError(f"no study named {study_name!r} in {storage_url}; "
                             "run `latts-tune run` first") from error
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if trial_number is None:
        ranked = rank(summarize(t) for t in trials)
        if not ranked:
            raise UserInputError(f"study {study_name!r} has no feasible trial to export")
        return _stored_settings(study), ranked[0]
    match = [t for t in trials if t.number == trial_number]
    if not match:
        raise UserInputError(f"study {study_name!r} has no completed trial {trial_number}")
    return _stored_settings(study), summarize(match[0])


def _stored_settings(study: optuna.Study) -> StudySettings:
    names = StudySettings.__dataclass_fields__
    attrs = {k: v for k, v in study.user_attrs.items() if k in names}
    if set(attrs) != set(names):
        raise UserInputError(f"study {study.study_name!r} was not created by latts-tune run")
    return StudySettings(**attrs)


def exhaustive_optimum(space: SearchSpace, simulator: Simulator, deadline_s: float,
                       latency: LatencyObjective) -> SimulationResult:
    """The simulator's best feasible configuration by brute force (same tie rule as `rank`)."""
    results = [simulator.score(c, latency, deadline_s) for c in space.configurations()]
    return best_of(results, deadline_s, latency)


def best_of(results: list[SimulationResult], deadline_s: float,
            latency: LatencyObjective) -> SimulationResult:
    """The best feasible result; NoFeasibleConfiguration if none meets the deadline."""
    feasible = [r for r in results if r.latency_s <= deadline_s]
    if not feasible:
        raise no_feasible_error(results, deadline_s, latency)
    return min(feasible, key=lambda r: (-r.accuracy, r.latency_s, r.configuration.sort_key()))


@dataclass(frozen=True)
class FrontierPoint:
    """The best configuration at one deadline (None: nothing meets it)."""

    deadline_s: float
    best: SimulationResult | None
    changed: bool  # the optimal configuration differs from the previous deadline's


def frontier(space: SearchSpace, simulator: Simulator, deadlines_s: Iterable[float],
             latency: LatencyObjective) -> list[FrontierPoint]:
    """Best predicted accuracy per deadline, by exhaustive scoring of the space."""
    configs = space.configurations()
    # Without a cutoff the scores do not depend on the deadline: score once.
    shared = None if latency.cutoff else [simulator.score(c, latency) for c in configs]
    points: list[FrontierPoint] = []
    previous = None
    for deadline_s in deadlines_s:
        results = shared or [simulator.score(c, latency, deadline_s) for c in configs]
        try:
            best = best_of(results, deadline_s, latency)
        except NoFeasibleConfiguration:
            best = None
        current = best.configuration if best else None
        points.append(FrontierPoint(deadline_s, best, bool(points) and current != previous))
        previous = current
    return points

"""The Optuna study: maximise predicted accuracy subject to latency statistic <= deadline.

Trials are scored in memory (the simulator takes milliseconds) by `objective`, then written
to the project database in one pass (`trial_writer`): real trials with params, values,
user attributes and constraints, but without Optuna's per-call round trips. When the space
has at most `ENUMERATION_LIMIT` configurations every one of them is a trial, so the best
feasible trial is the simulator's exact optimum; larger spaces use constrained TPE seeded
with simple configurations. Re-running a study scores only what it lacks.

Checks come before writes: a study is created (or extended) only once its trials are
scored and one of them is feasible, and the write is held from Ctrl-C, so an error or an
interrupt leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import ProfileSet, UserInputError
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.interrupts import interrupts_held
from tuner.core.load import Load, parse_load
from tuner.core.machine import CostSource
from tuner.core.optuna_storage import has_optuna_tables, open_rdb_storage
from tuner.core.ranking import NoFeasibleConfiguration, no_feasible_error, rank
from tuner.core.simulator import Simulator
from tuner.core.space import SearchSpace, configuration_from_params
from tuner.core.spec import StudySpec
from tuner.core.trial_writer import add_finished_trials
from tuner.core.trials import TrialSummary, record_figures, summarize

logger = logging.getLogger(__name__)

ENUMERATION_LIMIT = 5000
OBJECTIVE_DIGITS = 4
METRIC_NAMES = ["predicted accuracy"]  # what optuna-dashboard calls the objective
DEFAULT_TPE_TRIALS = 500


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
    confidence: float = 0.5  # studies of release 0.1 had no margin
    target_fingerprint: str = ""  # the machine tuned for, when not the costs' machine
    corrections: str = ""  # digest of the latency checks that corrected the costs
    spec_space: str = ""  # the spec's search fields (`spec_space`); "" in release 0.2 studies
    load: str = ""  # the load's key (`tuner.core.load`); "": one request owns the engine
    max_num_seqs: int = 0  # the engine's cap under load; 0: the largest profiled batch

    @property
    def objective(self) -> LatencyObjective:
        return LatencyObjective(self.statistic, self.quantile, self.cutoff, self.confidence)

    @property
    def load_value(self) -> Load | None:
        return parse_load(self.load) if self.load else None

    @classmethod
    def create(cls, spec: StudySpec, profile: ProfileSet, deadline_s: float,
               latency: LatencyObjective, source: CostSource | None = None,
               load: Load | None = None, max_num_seqs: int | None = None) -> StudySettings:
        # Tuned for another machine than the costs' with nothing correcting them, the
        # predictions are the costs' machine's own: the same study serves both.
        corrected = source if source is not None and source.corrections else None
        target = corrected.target if corrected is not None and corrected.foreign else None
        return cls(
            deadline_s=deadline_s, statistic=latency.statistic, quantile=latency.quantile,
            cutoff=latency.cutoff, spec_name=spec.name, task=spec.task, split=spec.split,
            hardware_fingerprint=profile.hardware.fingerprint,
            engine_version=profile.engine_version, profile_digest=profile_digest(profile),
            confidence=latency.confidence,
            target_fingerprint=target.fingerprint if target else "",
            corrections=corrected.corrections_digest() if corrected is not None else "",
            spec_space=spec_space(spec),
            load=load.key() if load is not None else "", max_num_seqs=max_num_seqs or 0,
        )

    def default_name(self) -> str:
        """E.g. "testbed-2s-q0.9"; tuned for another machine than the costs' or with
        corrected costs, the machine and the corrections are named too, so a study never
        mixes predictions made with different costs."""
        name = study_name_for(self.spec_name, self.deadline_s, self.objective)
        if self.target_fingerprint:
            name += f"-{self.target_fingerprint[:6]}"
        if self.load_value is not None:
            name += f"-at{self.load_value.tag()}"
        if self.max_num_seqs:
            name += f"-seqs{self.max_num_seqs}"
        return f"{name}-c{self.corrections[:6]}" if self.corrections else name


SPACE_FIELDS = ("models", "drafts", "branches", "gamma", "temperature", "max_trials")


def spec_space(spec: StudySpec) -> str:
    """The fields of a spec that shape its search space, as canonical JSON: a study keeps
    them, so a spec of the same name with another space cannot be mixed into it."""
    return json.dumps(spec.model_dump(mode="json", include=set(SPACE_FIELDS)), sort_keys=True)


def study_name_for(spec_name: str, deadline_s: float, objective: LatencyObjective) -> str:
    """Study name of a spec, deadline and objective, e.g. "testbed-2s-q0.9"."""
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
    result = simulator.score(config, settings.objective, settings.deadline_s,
                             settings.load_value)
    record_figures(trial, result)
    if result.max_num_seqs is not None:  # under load: what the preset's engine is sized to
        trial.set_user_attr("max_num_seqs", result.max_num_seqs)
    # Feasible only when the statistic meets the deadline with the study's confidence.
    trial.set_constraint("latency", result.latency_upper_s - settings.deadline_s)
    # The dashboard shows the objective as it is; the rank rule reads the exact accuracy.
    return round(result.accuracy, OBJECTIVE_DIGITS)


OnFinish = Callable[[optuna.Study, StudySettings, list[FrozenTrial]], None]


def run_study(storage_url: str, space: SearchSpace, simulator: Simulator,
              settings: StudySettings, *, study_name: str | None = None,
              max_trials: int | None = None, on_finish: OnFinish | None = None
              ) -> StudyOutcome:
    """Create or resume the study and return its outcome; NoFeasibleConfiguration if none,
    with nothing written.

    `on_finish(study, settings, trials)` runs once the trials are stored (e.g. to save
    dashboard figures), with the completed trials of the current space.
    """
    name = study_name or settings.default_name()
    storage = open_rdb_storage(storage_url) if has_optuna_tables(storage_url) else None
    stored = _existing_study(storage, name) if storage is not None else None
    if stored is not None and stored.user_attrs:  # compares only: writes come last
        check_settings(stored, settings)
    existing = stored.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if stored else []
    configs = space.configurations()
    exhaustive = len(configs) <= ENUMERATION_LIMIT
    if exhaustive:
        done = {configuration_from_params(t.params) for t in existing}
        new = _score_in_memory(space, simulator, settings,
                               [c for c in configs if c not in done])
    else:
        new = _search_tpe(space, simulator, settings, existing, max_trials or DEFAULT_TPE_TRIALS)
    # A reused study may hold trials of a wider spec: rank only the current space.
    in_space = set(configs)
    _require_feasible([t for t in (*existing, *new)
                       if configuration_from_params(t.params) in in_space], settings)
    with interrupts_held():
        study = optuna.create_study(storage=storage or open_rdb_storage(storage_url),
                                    study_name=name, direction="maximize", load_if_exists=True)
        check_settings(study, settings)
        if study.metric_names != METRIC_NAMES:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged in 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(METRIC_NAMES)
        add_finished_trials(study, new)
        trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if configuration_from_params(t.params) in in_space]
        if on_finish is not None:
            on_finish(study, settings, trials)
    logger.info("study %s: %d trials (%d new)", name, len(trials), len(new))
    return _outcome(name, storage_url, settings, trials, len(new), exhaustive)


def _existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The stored study called `name`, or None; loading writes nothing."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _require_feasible(trials: list[FrozenTrial], settings: StudySettings) -> None:
    summaries = [summarize(t) for t in trials]
    if not rank(summaries):
        raise no_feasible_error(summaries, settings.deadline_s, settings.objective)


def check_settings(study: optuna.Study, settings: StudySettings) -> None:
    """Store the settings on a new study; refuse a stored study whose settings differ."""
    check_study_attrs(study, asdict(settings))


def check_study_attrs(study: optuna.Study, wanted: dict) -> None:
    """Store `wanted` on a new study; refuse a stored study whose attributes differ
    (settings added after a study was written take their old meaning, `_LEGACY`; those
    an old study cannot tell, `_UNRECORDED`, are not compared)."""
    stored = {**_LEGACY, **study.user_attrs} if study.user_attrs else {}
    if not stored:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    differing = [k for k, v in wanted.items() if stored.get(k) != v
                 and (k in study.user_attrs or k not in _UNRECORDED)]
    if "spec_space" in differing:
        raise UserInputError(
            f"study {study.study_name!r} was made from a spec with another search space "
            f"({space_difference(stored['spec_space'], wanted['spec_space'])}); pass another "
            "--study-name or rename the spec"
        )
    if differing:
        raise UserInputError(
            f"study {study.study_name!r} exists with different {', '.join(differing)} "
            f"({', '.join(f'{k}={stored.get(k)!r}' for k in differing)}); "
            "pass another --study-name"
        )


# What a setting meant before it was stored (release 0.1).
_LEGACY = {"confidence": 0.5, "target_fingerprint": "", "corrections": "", "load": "",
           "max_num_seqs": 0, "spec_space": ""}
_UNRECORDED = {"spec_space"}


def space_difference(stored: str, wanted: str) -> str:
    """The first search-space field two `spec_space` texts differ in, e.g.
    "branches.max: 4 in the study, 8 in the spec"."""
    old, new = _flat(json.loads(stored)), _flat(json.loads(wanted))
    key = next(k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))
    return f"{key}: {old.get(key)} in the study, {new.get(key)} in the spec"


def _flat(fields: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def stored_settings(study: optuna.Study) -> StudySettings:
    """The settings a `latts-tune run` study was created with."""
    names = StudySettings.__dataclass_fields__
    attrs = {k: v for k, v in {**_LEGACY, **study.user_attrs}.items() if k in names}
    if set(attrs) != set(names):
        raise UserInputError(f"study {study.study_name!r} was not created by latts-tune run")
    return StudySettings(**attrs)


def _score_in_memory(space: SearchSpace, simulator: Simulator, settings: StudySettings,
                     configs: list[Configuration]) -> list[FrozenTrial]:
    memory = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    for config in configs:
        memory.enqueue_trial(space.params(config))
    _optimize(memory, space, simulator, settings, len(configs))
    return memory.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _optimize(memory: optuna.Study, space: SearchSpace, simulator: Simulator,
              settings: StudySettings, n_trials: int) -> None:
    """`n_trials` asked and told in turn: `Study.optimize` would log an interrupted trial
    with a traceback on the way out; an interrupt here just stops."""
    for _ in range(n_trials):
        trial = memory.ask()
        try:
            value = objective(trial, space, simulator, settings)
        except optuna.TrialPruned:  # a combination the profile cannot score
            memory.tell(trial, state=TrialState.PRUNED)
            continue
        memory.tell(trial, value)


def _search_tpe(space: SearchSpace, simulator: Simulator, settings: StudySettings,
                existing: list[FrozenTrial], n_trials: int) -> list[FrozenTrial]:
    memory = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.TPESampler(seed=0))
    memory.add_trials(existing)
    for config in seed_guesses(space):
        memory.enqueue_trial(space.params(config), skip_if_exists=True)
    _optimize(memory, space, simulator, settings, max(0, n_trials - len(existing)))
    return [t for t in memory.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number >= len(existing)]


def seed_guesses(space: SearchSpace) -> Iterable[Configuration]:
    """Corners worth knowing at once: one branch and all branches, with and without each
    speculation at its shortest and longest draft length (the first vote rule and budget)."""
    vote, budget = space.votes[0], space.budgets[0]
    for entry in space.models:
        for temperature in entry.temperatures:
            for n in sorted({entry.min_branches, entry.max_branches}):
                yield Configuration(entry.model, n, None, temperature, vote, budget)
                for choice in entry.speculations:
                    for gamma in sorted({choice.gammas[0], choice.gammas[-1]}):
                        if choice.fits(gamma, n):
                            yield Configuration(entry.model, n, choice.speculation(gamma),
                                                temperature, vote, budget)


def _outcome(name: str, storage_url: str, settings: StudySettings, trials: list[FrozenTrial],
             new_trials: int, exhaustive: bool) -> StudyOutcome:
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
        no_speculation=next((s for s in ranked if s.configuration.speculation is None), None),
        single_branch=next((s for s in ranked if s.configuration.branches == 1), None),
        trials=len(trials),
        new_trials=new_trials,
        exhaustive=exhaustive,
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
        return stored_settings(study), ranked[0]
    match = [t for t in trials if t.number == trial_number]
    if not match:
        raise UserInputError(f"study {study_name!r} has no completed trial {trial_number}")
    return stored_settings(study), summarize(match[0])


__all__ = ["NoFeasibleConfiguration", "StudyOutcome", "StudySettings", "run_study"]

"""Measure-mode studies: Optuna trials executed on the real engine (ask/tell).

Each trial runs the executor on the same held-out question subset; its value is measured
accuracy and its constraint the measured latency statistic minus the deadline. A new study
is seeded (enqueue_trial) with the best predicted configurations, grouped so that trials
of one engine run back to back; engines come from an EnginePool and outlive trials.
The study lives in the project database: re-running continues it, keeping finished
trials; a trial interrupted mid-measurement is marked failed and its configuration queued
again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from profilers import (
    EnginePool,
    ExecutionPlan,
    ProgressReporter,
    SilentProgress,
    StreamingEngine,
    get_task,
)
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.machine import THIS_MACHINE, MachineChoice
from tuner.core.operations import Workspace, open_workspace
from tuner.core.optuna_storage import open_rdb_storage
from tuner.core.ranking import meets, rank
from tuner.core.space import configuration_from_params
from tuner.core.study import StudySettings, check_study_attrs
from tuner.core.trials import MEASURED_PREFIX, MeasuredTrial, summarize_measured
from tuner.core.validate import Measurement, engine_arguments, measure, select_questions

logger = logging.getLogger(__name__)

SEEDED_TRIALS = 4
MAX_ASKS_PER_TRIAL = 20  # TPE repeats itself in small spaces; repeats are pruned, not run
MEASURED_ATTRS = ("accuracy", "accuracy_low", "accuracy_high", "mean_latency_s",
                  "p50_latency_s", "p90_latency_s")


@dataclass(frozen=True)
class MeasureSettings:
    """How each trial is measured: questions of `split` (slice `seed`), the budget."""

    budget_trials: int = 8
    questions: int = 20
    split: str = "validation"
    seed: int = 0
    max_tokens: int | None = None  # None: the profile's max_tokens


@dataclass(frozen=True)
class MeasureOutcome:
    study_name: str
    storage_url: str
    deadline_s: float
    objective: LatencyObjective
    trials: tuple[MeasuredTrial, ...]  # by trial number
    new_trials: int

    @property
    def best(self) -> MeasuredTrial | None:
        ranked = rank(self.trials)
        return ranked[0] if ranked else None


def run_measure_study(workspace: Workspace, storage_url: str, settings: StudySettings,
                      measuring: MeasureSettings, pool: EnginePool, *,
                      study_name: str | None = None,
                      progress: ProgressReporter | None = None) -> MeasureOutcome:
    """Create or continue the measure-mode study until `budget_trials` trials are done."""
    progress = progress or SilentProgress()
    name = study_name or f"{settings.default_name()}-measure"
    study = optuna.create_study(storage=open_rdb_storage(storage_url), study_name=name,
                                direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=measuring.seed))
    check_study_attrs(study, {**asdict(settings), "mode": "measure",
                              "measure_questions": measuring.questions,
                              "measure_split": measuring.split,
                              "measure_seed": measuring.seed})
    _requeue_interrupted(study)
    if not study.get_trials(deepcopy=False):
        for config in seed_configurations(workspace, settings, SEEDED_TRIALS):
            study.enqueue_trial(workspace.space.params(config))
    done = len(_complete(study))
    progress.start(f"measure-mode study {name}", measuring.budget_trials)
    progress.advance(min(done, measuring.budget_trials))
    runner = _TrialRunner(workspace, settings, measuring, pool)
    new = 0
    for _ in range(max(0, measuring.budget_trials - done) * MAX_ASKS_PER_TRIAL):
        if len(_complete(study)) >= measuring.budget_trials:
            break
        if runner.run(study):
            new += 1
            progress.advance()
    trials = tuple(summarize_measured(t) for t in _complete(study))
    return MeasureOutcome(name, storage_url, settings.deadline_s, settings.objective,
                          trials, new)


def seed_configurations(workspace: Workspace, settings: StudySettings,
                        count: int) -> list[Configuration]:
    """The `count` best predicted feasible configurations, grouped by engine."""
    results = [workspace.simulator.score(c, settings.objective, settings.deadline_s)
               for c in workspace.space.configurations()]
    ranked = rank(results, lambda r: meets(r.latency_upper_s, settings.deadline_s))
    chosen = [r.configuration for r in ranked[:count]]
    first_seen: dict[tuple, int] = {}
    for index, config in enumerate(chosen):
        first_seen.setdefault(config.engine_key(), index)
    return sorted(chosen, key=lambda c: first_seen[c.engine_key()])


class _TrialRunner:
    """Asks for a trial, measures it on a pooled engine, tells the result."""

    def __init__(self, workspace: Workspace, settings: StudySettings,
                 measuring: MeasureSettings, pool: EnginePool) -> None:
        self.workspace, self.settings, self.pool = workspace, settings, pool
        self.task = get_task(settings.task, workspace.definitions)
        self.questions = select_questions(self.task, measuring.split, measuring.questions,
                                          measuring.seed)
        self.max_tokens = measuring.max_tokens
        self.measuring = measuring

    def run(self, study: optuna.Study) -> bool:
        """One ask/tell round; True when a new configuration was measured."""
        trial = study.ask()
        try:
            config = self.workspace.space.suggest(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return False
        if config in {configuration_from_params(t.params) for t in _complete(study)}:
            study.tell(trial, state=TrialState.PRUNED)  # measured already: no new information
            return False
        accuracy = self._measure(trial, config)
        study.tell(trial, accuracy)
        return True

    def _measure(self, trial: optuna.Trial, config: Configuration) -> float:
        model, speculative = engine_arguments(self.workspace.profile, config)
        engine = cast(StreamingEngine, self.pool.get(model, speculative))
        report = measure(engine, self.task, self.questions, self._plan(config))
        measured = Measurement.of(report)
        objective, deadline_s = self.settings.objective, self.settings.deadline_s
        predicted = self.workspace.simulator.score(config, objective, deadline_s)
        latency_s = report.latency_statistic_s(objective)
        for name in MEASURED_ATTRS:
            trial.set_user_attr(f"{MEASURED_PREFIX}{name}", getattr(measured, name))
        trial.set_user_attr(f"{MEASURED_PREFIX}latency_s", latency_s)
        trial.set_user_attr("predicted_accuracy", predicted.accuracy)
        trial.set_user_attr("predicted_latency_s", predicted.latency_s)
        trial.set_user_attr("questions", measured.questions)
        trial.set_constraint("latency", latency_s - self.settings.deadline_s)
        logger.info("trial %d %s: accuracy %.3f, latency %.3f s", trial.number,
                    config.label(), measured.accuracy, latency_s)
        return measured.accuracy

    def _plan(self, config: Configuration) -> ExecutionPlan:
        table = self.workspace.simulator.table(config.model, config.temperature,
                                               config.max_tokens)
        return ExecutionPlan(n=config.branches, temperature=config.temperature,
                             max_tokens=self.max_tokens or table.max_tokens,
                             deadline_s=self.settings.deadline_s if self.settings.cutoff
                             else None, vote=config.vote)


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _requeue_interrupted(study: optuna.Study) -> None:
    # One process runs a measure-mode study: a RUNNING trial is one a killed run left.
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params)
            logger.info("trial %d was interrupted; its configuration is queued again",
                        trial.number)


def measure_study(db, spec, deadline_s: float, latency: LatencyObjective,
                  measuring: MeasureSettings, pool: EnginePool, *,
                  study_name: str | None = None,
                  progress: ProgressReporter | None = None,
                  machine: MachineChoice = THIS_MACHINE) -> MeasureOutcome:
    """Open the spec's workspace and run (or continue) its measure-mode study."""
    workspace = open_workspace(db, spec, machine)
    settings = workspace.settings(deadline_s, latency)
    return run_measure_study(workspace, db.url, settings, measuring, pool,
                             study_name=study_name, progress=progress)

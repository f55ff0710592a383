"""Stored trials as scored configurations: their figures, feasibility and the best one.

A trial of a predict-mode study stores the `Figures` of its configuration as user
attributes and its latency constraint (<= 0: feasible), so any reader (run, export, the
dashboard, the report) rebuilds the same `TrialSummary` and ranks with the one rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from tuner.core.configuration import Configuration, Figures
from tuner.core.ranking import rank
from tuner.core.space import configuration_from_params

RESULT_ATTRS = Figures.names()


@dataclass(frozen=True, kw_only=True)
class TrialSummary(Figures):
    """A scored configuration as stored in the study."""

    number: int
    configuration: Configuration
    feasible: bool
    max_num_seqs: int | None = None  # under load: the engine's cap the figures hold for


def record_figures(trial: optuna.Trial, figures: Figures) -> None:
    """Store a configuration's figures as the trial's user attributes."""
    for name in RESULT_ATTRS:
        trial.set_user_attr(name, getattr(figures, name))


def is_feasible(trial: FrozenTrial) -> bool:
    """Every constraint <= 0 (Optuna's own rule)."""
    return all(value <= 0 for value in trial.constraints.values())


def summarize(trial: FrozenTrial) -> TrialSummary:
    """The stored figures of a completed trial (trials of release 0.1 had no margin: their
    bound is the statistic itself)."""
    attrs = {"latency_upper_s": trial.user_attrs.get("latency_s"), **trial.user_attrs}
    return TrialSummary(
        number=trial.number,
        configuration=configuration_from_params(trial.params),
        feasible=is_feasible(trial),
        max_num_seqs=attrs.get("max_num_seqs"),
        **{name: float(attrs[name]) for name in RESULT_ATTRS},
    )


def has_figures(trial: FrozenTrial) -> bool:
    """Whether the trial stores predicted figures (a predict-mode trial)."""
    return "latency_s" in trial.user_attrs and "accuracy" in trial.user_attrs


@dataclass(frozen=True)
class MeasuredTrial:
    """A finished measure-mode trial: measured figures, the prediction beside them."""

    number: int
    configuration: Configuration
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    latency_s: float  # the study's latency statistic, measured
    mean_latency_s: float
    predicted_accuracy: float
    predicted_latency_s: float
    feasible: bool


MEASURED_PREFIX = "measured_"


def has_measurements(trial: FrozenTrial) -> bool:
    """Whether the trial stores measured figures (a measure-mode trial)."""
    return f"{MEASURED_PREFIX}latency_s" in trial.user_attrs


def summarize_measured(trial: FrozenTrial) -> MeasuredTrial:
    """The measured figures of a completed measure-mode trial."""
    attrs = trial.user_attrs
    return MeasuredTrial(
        number=trial.number, configuration=configuration_from_params(trial.params),
        accuracy=attrs["measured_accuracy"], accuracy_low=attrs["measured_accuracy_low"],
        accuracy_high=attrs["measured_accuracy_high"], latency_s=attrs["measured_latency_s"],
        mean_latency_s=attrs["measured_mean_latency_s"],
        predicted_accuracy=attrs["predicted_accuracy"],
        predicted_latency_s=attrs["predicted_latency_s"],
        feasible=is_feasible(trial),
    )


def best_trial_number(trials: list[FrozenTrial]) -> int | None:
    """The number of the best feasible trial by the rank rule (None: no feasible trial).

    Predict-mode trials rank by their stored figures, measure-mode trials by what was
    measured."""
    summaries: list = [summarize(t) for t in trials if has_figures(t)]
    summaries += [summarize_measured(t) for t in trials
                  if not has_figures(t) and has_measurements(t)]
    ranked = rank(summaries)
    return ranked[0].number if ranked else None

"""What a person reviews about a stored study: its trials, winner, variants and profile.

Used by the dashboard figures (saved when a study finishes) and the HTML report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import Database, ProfileSet, ProfileStore, UserInputError
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.durations import format_duration
from tuner.core.optuna_storage import open_rdb_storage
from tuner.core.ranking import rank
from tuner.core.study import StudySettings, stored_settings
from tuner.core.trials import TrialSummary, summarize
from tuner.review.figures import (
    BreakdownBar,
    breakdown_figure,
    frontier_figure,
    latency_accuracy_figure,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyReview:
    """A stored study as the review shows it (seconds, fractions of questions)."""

    study_name: str
    storage_url: str
    settings: StudySettings
    summaries: tuple[TrialSummary, ...]  # every completed trial, in trial order
    ranked: tuple[TrialSummary, ...]  # feasible, best first

    @property
    def latency(self) -> LatencyObjective:
        return self.settings.objective

    @property
    def best(self) -> TrialSummary | None:
        return self.ranked[0] if self.ranked else None

    @property
    def export_command(self) -> str:
        return f"latts-tune export --study {self.study_name} --format vllm -o presets/"


def study_names(storage_url: str) -> list[str]:
    """Names of all studies in the database, sorted."""
    storage = open_rdb_storage(storage_url)
    return sorted(s.study_name for s in storage.get_all_studies())


def load_study(storage_url: str, study_name: str) -> optuna.Study:
    """The stored study; UserInputError listing the known studies when it does not exist."""
    try:
        return optuna.load_study(study_name=study_name, storage=open_rdb_storage(storage_url))
    except KeyError:
        known = ", ".join(study_names(storage_url)) or "none; run `latts-tune run` first"
        raise UserInputError(f"no study named {study_name!r}; known studies: {known}") from None


def review_of(study: optuna.Study, storage_url: str) -> StudyReview:
    """Summaries and ranking of a study created by `latts-tune run`."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return review_from_trials(study.study_name, storage_url, stored_settings(study), trials)


def review_from_trials(study_name: str, storage_url: str, settings: StudySettings,
                       trials: list[FrozenTrial]) -> StudyReview:
    """The review of completed `trials` scored under `settings`."""
    summaries = tuple(summarize(t) for t in trials)
    return StudyReview(study_name, storage_url, settings, summaries, tuple(rank(summaries)))


def breakdown_bars(review: StudyReview) -> list[BreakdownBar]:
    """The best trial, then the same with one branch, without speculation, and both, as
    far as the study scored those variants."""
    best = review.best
    if best is None:
        return []
    config = best.configuration
    variants = (
        ("best", config),
        ("one branch", replace(config, branches=1)),
        ("without speculation", replace(config, speculation=None)),
        ("one branch, no speculation", replace(config, branches=1, speculation=None)),
    )
    by_config = {s.configuration: s for s in review.summaries}
    bars: list[BreakdownBar] = []
    seen: set[Configuration] = set()
    for role, variant in variants:
        if variant in by_config and variant not in seen:
            seen.add(variant)
            bars.append(BreakdownBar(role, by_config[variant]))
    return bars


def load_profile(db: Database, settings: StudySettings) -> ProfileSet:
    """The profile the study was scored on (same hardware and engine version)."""
    return ProfileStore(db).load_profile_set(settings.hardware_fingerprint,
                                             settings.engine_version)


def validation_results(db: Database, study_name: str) -> list[dict]:
    """Validation runs of the study's stored presets: preset, predicted_s, measured_s (p90
    latency), predicted_accuracy, measured_accuracy; [] when none is stored."""
    from storage import PresetStore, ValidationStore

    validations = ValidationStore(db)
    presets = [p.name for p in PresetStore(db).list() if p.study_name == study_name]
    return [
        {"preset": record.preset_name, "predicted_s": record.predicted_p90_latency_s,
         "measured_s": record.measured_p90_latency_s,
         "predicted_accuracy": record.predicted_accuracy,
         "measured_accuracy": record.measured_accuracy}
        for name in presets
        for record in validations.for_preset(name)
    ]


def study_figures(review: StudyReview) -> dict:
    """Figure id -> figure: trials, frontier and (with a winner) the latency breakdown."""
    figures = {
        "latts-trials": latency_accuracy_figure(review.summaries, review.settings.deadline_s,
                                                review.latency, review.best),
        "latts-frontier": frontier_figure(review.summaries, review.settings.deadline_s,
                                          review.latency),
    }
    bars = breakdown_bars(review)
    if bars:
        figures["latts-breakdown"] = breakdown_figure(bars, review.latency,
                                                      review.settings.deadline_s)
    return figures


def winner_note(review: StudyReview) -> str:
    """Markdown (the dashboard's note): the winner, its predicted figures and the export
    command; without a winner, the fastest configuration and what it would need."""
    settings = review.settings
    lines = [f"# {review.study_name}", "",
             f"Deadline **{format_duration(settings.deadline_s)}** on the "
             f"{review.latency.describe()} at {settings.confidence:.0%} confidence, task "
             f"`{settings.task}`, {len(review.summaries)} trials ({len(review.ranked)} "
             "feasible).", ""]
    best = review.best
    if best is None:
        return "\n".join(lines + [no_winner_text(review)])
    lines += [f"**Winner (trial {best.number}):** `{best.configuration.label()}`", "",
              f"- predicted accuracy {best.accuracy:.1%} "
              f"(95% CI {best.accuracy_low:.1%}-{best.accuracy_high:.1%})",
              f"- {review.latency.describe()} {format_duration(best.latency_s)} (bound "
              f"{format_duration(best.latency_upper_s)}), mean "
              f"{format_duration(best.mean_latency_s)} (prefill "
              f"{format_duration(best.prefill_s)}, decode {format_duration(best.decode_s)}, "
              f"{best.tokens_per_step:.2f} tokens/step)", "",
              "Export the preset:", "", "```", review.export_command, "```"]
    return "\n".join(lines)


def no_winner_text(review: StudyReview) -> str:
    """What an infeasible study says: the fastest configuration and the deadline it needs."""
    if not review.summaries:
        return "No trials."
    fastest = min(review.summaries, key=lambda s: (s.latency_upper_s,
                                                   s.configuration.sort_key()))
    return (f"No configuration meets the deadline. The fastest is "
            f"{fastest.configuration.label()}: {review.latency.describe()} "
            f"{format_duration(fastest.latency_s)}, bound "
            f"{format_duration(fastest.latency_upper_s)}; a deadline of at least that much "
            "has a winner.")

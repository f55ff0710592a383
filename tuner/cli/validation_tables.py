"""Validation results as a rich table and a JSON-ready dict (fractions, seconds)."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table

from storage import ValidationRecord
from tuner.cli.tables import speculation_cell
from tuner.core.durations import format_duration
from tuner.core.measure import MeasureOutcome
from tuner.core.trials import MeasuredTrial


def validation_table(record: ValidationRecord) -> Table:
    """Predicted vs measured accuracy (95% intervals) and latency (mean, p50, p90)."""
    table = Table(title=f"Preset {record.preset_name}: predicted vs measured "
                        f"({record.questions} {record.split} questions, seed {record.seed})")
    for header in ("", "predicted", "measured", "error"):
        table.add_column(header, justify="left" if not header else "right", no_wrap=True)
    table.add_row(
        "accuracy (95% CI of the mean)",
        _interval(record.predicted_accuracy, record.predicted_accuracy_low,
                  record.predicted_accuracy_high),
        _interval(record.measured_accuracy, record.measured_accuracy_low,
                  record.measured_accuracy_high),
        f"{(record.measured_accuracy - record.predicted_accuracy) * 100:+.1f} pt",
    )
    low, high = record.expected_accuracy_low, record.expected_accuracy_high
    if low is not None and high is not None:
        # what a run on this many new questions should measure: the check that counts
        expected_inside = low <= record.measured_accuracy <= high
        table.add_row(f"  95% prediction for {record.questions} new questions",
                      f"{low:.1%}-{high:.1%}",
                      f"{record.measured_accuracy:.1%}",
                      "inside" if expected_inside else "outside")
    for label, predicted, measured in latency_rows(record):
        table.add_row(label, format_duration(predicted), format_duration(measured),
                      f"{(measured - predicted) / predicted:+.1%}")
    return table


def latency_rows(record: ValidationRecord) -> list[tuple[str, float, float]]:
    return [
        ("mean latency", record.predicted_mean_latency_s, record.measured_mean_latency_s),
        ("p50 latency", record.predicted_p50_latency_s, record.measured_p50_latency_s),
        ("p90 latency", record.predicted_p90_latency_s, record.measured_p90_latency_s),
    ]


def validation_footer(record: ValidationRecord) -> str:
    aborted = f"; {record.aborted_branches} branches aborted at the deadline" \
        if record.aborted_branches else ""
    return (f"Stored as validation {record.id} of preset {record.preset_name} "
            f"({record.engine_version}, hardware {record.hardware_fingerprint[:12]}){aborted}.")


def validation_json(record: ValidationRecord) -> dict:
    data = asdict(record)
    data["created_at"] = record.created_at.isoformat() if record.created_at else None
    return data


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.1%} ({low * 100:.1f}-{high:.1%})"


def measured_table(outcome: MeasureOutcome) -> Table:
    """Every measured trial: measured vs predicted accuracy and latency statistic."""
    statistic = outcome.objective.describe()
    table = Table(title=f"Measured trials for a {format_duration(outcome.deadline_s)} "
                        f"deadline ({statistic}, on the real engine)")
    for header in ("trial", "model", "N", "draft", "measured accuracy (95% CI)",
                   "predicted", f"measured {statistic}", "predicted", "feasible"):
        table.add_column(header, justify="left" if header in ("model", "draft") else "right",
                         no_wrap=True)
    best = outcome.best
    for trial in outcome.trials:
        table.add_row(*_measured_cells(trial), style="bold" if trial == best else None)
    return table


def _measured_cells(trial: MeasuredTrial) -> list[str]:
    config = trial.configuration
    return [
        str(trial.number), config.model, str(config.branches),
        speculation_cell(config),
        _interval(trial.accuracy, trial.accuracy_low, trial.accuracy_high),
        f"{trial.predicted_accuracy:.1%}", format_duration(trial.latency_s),
        format_duration(trial.predicted_latency_s), "yes" if trial.feasible else "no",
    ]


def measured_footer(outcome: MeasureOutcome) -> str:
    best = outcome.best
    found = (f"best measured: {best.configuration.label()} (trial {best.number})" if best
             else "no trial met the deadline")
    return (f"Study {outcome.study_name!r} in {outcome.storage_url}: {len(outcome.trials)} "
            f"measured trials ({outcome.new_trials} new); {found}. Rerun the same command "
            "to continue it.")


def measured_json(outcome: MeasureOutcome) -> dict:
    return {
        "study": outcome.study_name, "storage": outcome.storage_url,
        "deadline_s": outcome.deadline_s, "latency": asdict(outcome.objective),
        "new_trials": outcome.new_trials,
        "best": _trial_json(outcome.best) if outcome.best else None,
        "trials": [_trial_json(trial) for trial in outcome.trials],
    }


def _trial_json(trial: MeasuredTrial) -> dict:
    data = asdict(trial)
    data["configuration"] = asdict(trial.configuration)
    return data

"""Turn study outcomes, frontiers and presets into rich tables and JSON-ready dicts."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table

from tuner.durations import format_duration
from tuner.simulator import LatencyObjective
from tuner.study import FrontierPoint, StudyOutcome, TrialSummary


def outcome_table(outcome: StudyOutcome, top: int) -> Table:
    """The best `top` feasible trials, then the best without speculation and with N=1."""
    latency_header = outcome.objective.describe()
    table = Table(title=f"Best configurations for a {format_duration(outcome.deadline_s)} "
                        f"deadline ({latency_header})")
    for header in ("", "model", "N", "draft", "T", "accuracy (95% CI)", latency_header,
                   "mean latency", "trial"):
        table.add_column(header, justify="left" if header in ("", "model", "draft")
                         else "right", no_wrap=True)
    for index, summary in enumerate(outcome.ranked[:top], start=1):
        table.add_row(f"#{index}", *_cells(summary))
    for title, runner_up in (("no speculation", outcome.no_speculation),
                             ("one branch", outcome.single_branch)):
        if runner_up is not None:
            table.add_row(title, *_cells(runner_up), style="dim")
    return table


def _cells(summary: TrialSummary) -> list[str]:
    config = summary.configuration
    return [
        config.model, str(config.branches),
        f"{config.draft} g={config.gamma}" if config.draft else "-",
        f"{config.temperature:g}", _accuracy(summary.accuracy, summary.accuracy_low,
                                             summary.accuracy_high),
        format_duration(summary.latency_s), format_duration(summary.mean_latency_s),
        str(summary.number),
    ]


def _accuracy(accuracy: float, low: float, high: float) -> str:
    return f"{accuracy:.1%} ({low * 100:.1f}-{high:.1%})"


def outcome_footer(outcome: StudyOutcome) -> str:
    """Where the study is stored and how it searched."""
    search = ("every configuration scored (exhaustive)" if outcome.exhaustive
              else "constrained TPE search")
    return (f"Study {outcome.study_name!r} in {outcome.storage_url}: {outcome.trials} trials "
            f"({outcome.new_trials} new; {search}). Export: latts-tune export --study "
            f"{outcome.study_name} --format vllm -o presets/")


def outcome_json(outcome: StudyOutcome, top: int) -> dict:
    """The outcome for machines (seconds, fractions)."""
    return {
        "study": outcome.study_name,
        "storage": outcome.storage_url,
        "deadline_s": outcome.deadline_s,
        "latency": asdict(outcome.objective),
        "trials": outcome.trials,
        "new_trials": outcome.new_trials,
        "exhaustive": outcome.exhaustive,
        "best": [summary_json(s) for s in outcome.ranked[:top]],
        "no_speculation": summary_json(outcome.no_speculation),
        "single_branch": summary_json(outcome.single_branch),
    }


def summary_json(summary: TrialSummary | None) -> dict | None:
    if summary is None:
        return None
    data = asdict(summary)
    data["configuration"] = asdict(summary.configuration)
    return data


def frontier_table(points: list[FrontierPoint], latency: LatencyObjective) -> Table:
    """Best accuracy per deadline; `*` marks a change of the optimal configuration."""
    table = Table(title=f"Best predicted accuracy vs deadline ({latency.describe()})")
    for header in ("deadline", "accuracy (95% CI)", latency.describe(), "configuration", ""):
        table.add_column(header, justify="left" if header == "configuration" else "right",
                         no_wrap=True)
    for point in points:
        if point.best is None:
            table.add_row(format_duration(point.deadline_s), "-", "-", "nothing meets it", "")
            continue
        best = point.best
        table.add_row(
            format_duration(point.deadline_s),
            _accuracy(best.accuracy, best.accuracy_low, best.accuracy_high),
            format_duration(best.latency_s), best.configuration.label(),
            "* changed" if point.changed else "",
        )
    return table


def frontier_json(points: list[FrontierPoint]) -> list[dict]:
    return [
        {
            "deadline_s": point.deadline_s,
            "changed": point.changed,
            "best": None if point.best is None else {
                "configuration": asdict(point.best.configuration),
                "accuracy": point.best.accuracy,
                "accuracy_low": point.best.accuracy_low,
                "accuracy_high": point.best.accuracy_high,
                "latency_s": point.best.latency_s,
                "mean_latency_s": point.best.mean_latency_s,
            },
        }
        for point in points
    ]

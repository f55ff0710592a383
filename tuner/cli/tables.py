"""Turn study outcomes, frontiers and presets into rich tables and JSON-ready dicts."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table

from tuner.core.calibrate import CalibrationReport
from tuner.core.configuration import Figures, LatencyObjective
from tuner.core.durations import format_duration
from tuner.core.frontier import FrontierPoint, LoadPoint
from tuner.core.load import Load
from tuner.core.machine import CostSource, describe
from tuner.core.simulator import SimulationResult
from tuner.core.study import StudyOutcome
from tuner.core.trials import TrialSummary


def outcome_table(outcome: StudyOutcome, top: int, source: CostSource | None = None,
                  load: Load | None = None) -> Table:
    """The best `top` feasible trials, then the best without speculation and with N=1;
    with a margin, the latency bound at the study's confidence and the margin too."""
    objective = outcome.objective
    latency_header = objective.describe()
    machine = f" on {source.title()}" if source is not None else ""
    under = f" under {load.label()}" if load is not None else ""
    table = Table(title=f"Best configurations for a {format_duration(outcome.deadline_s)} "
                        f"deadline ({latency_header}){under}{machine}")
    for header in ("", "model", "N", "speculation", "temp", "accuracy (95% CI)", latency_header,
                   *_bound_headers(objective), *_mean_header(objective), "trial"):
        table.add_column(header, justify="left" if header in ("", "model", "speculation")
                         else "right", no_wrap=True)
    for index, summary in enumerate(outcome.ranked[:top], start=1):
        table.add_row(f"#{index}", *_cells(summary, objective))
    for title, runner_up in (("no speculation", outcome.no_speculation),
                             ("one branch", outcome.single_branch)):
        if runner_up is not None:
            table.add_row(title, *_cells(runner_up, objective), style="dim")
    return table


def _mean_header(objective: LatencyObjective) -> tuple[str, ...]:
    """A mean-latency column beside the deadline's statistic, unless that is the mean."""
    return () if objective.statistic == "mean" else ("mean latency",)


def _mean_cell(figures, objective: LatencyObjective) -> list[str]:
    return [format_duration(figures.mean_latency_s)] if _mean_header(objective) else []


def _bound_headers(objective: LatencyObjective) -> tuple[str, ...]:
    if not has_margin(objective):
        return ()
    return (f"bound ({objective.confidence:.0%})", "margin")


def has_margin(objective: LatencyObjective) -> bool:
    """Whether feasibility uses a bound above the statistic (confidence above 0.5)."""
    return objective.confidence > 0.5 and not objective.cutoff


def _bound_cells(figures, objective: LatencyObjective) -> list[str]:
    if not has_margin(objective):
        return []
    margin = figures.latency_upper_s / figures.latency_s - 1 if figures.latency_s else 0.0
    return [format_duration(figures.latency_upper_s), f"+{margin:.0%}"]


def _cells(summary: TrialSummary, objective: LatencyObjective) -> list[str]:
    config = summary.configuration
    return [
        config.model, str(config.branches),
        speculation_cell(config),
        f"{config.temperature:g}", _accuracy(summary.accuracy, summary.accuracy_low,
                                             summary.accuracy_high),
        format_duration(summary.latency_s), *_bound_cells(summary, objective),
        *_mean_cell(summary, objective), str(summary.number),
    ]


def speculation_cell(config) -> str:
    """The speculation column: "tb-draft gamma=2", "ngram gamma=3" or "-"."""
    speculation = config.speculation
    return speculation.label() if speculation else "-"


def _accuracy(accuracy: float, low: float, high: float) -> str:
    return f"{accuracy:.1%} ({low * 100:.1f}-{high:.1%})"


def outcome_footer(outcome: StudyOutcome) -> list[str]:
    """Where the study is stored, how it searched, whether the deadline constrained the
    choice, and the export command on a line of its own (to copy whole)."""
    search = ("every configuration scored (exhaustive)" if outcome.exhaustive
              else "constrained TPE search")
    lines = [f"Study {outcome.study_name!r} in {outcome.storage_url}: {outcome.trials} trials "
             f"({outcome.new_trials} new; {search})."]
    if len(outcome.ranked) == outcome.trials:
        slowest = max(s.latency_upper_s for s in outcome.ranked)
        lines.append(f"Every configuration meets this deadline (the slowest within "
                     f"{format_duration(slowest)}): it constrains nothing, so the most "
                     "accurate configuration wins; a shorter deadline trades accuracy for "
                     "speed.")
    lines.append(f"Export: latts-tune export --study {outcome.study_name} --format vllm "
                 "-o presets/")
    return lines


def outcome_json(outcome: StudyOutcome, top: int, source: CostSource | None = None,
                 load: Load | None = None) -> dict:
    """The outcome for machines (seconds, fractions)."""
    return {
        "study": outcome.study_name,
        "load": load.key() if load is not None else None,
        "storage": outcome.storage_url,
        **machine_json(source),
        "deadline_s": outcome.deadline_s,
        "latency": asdict(outcome.objective),
        "trials": outcome.trials,
        "new_trials": outcome.new_trials,
        "exhaustive": outcome.exhaustive,
        "best": [summary_json(s) for s in outcome.ranked[:top]],
        "no_speculation": summary_json(outcome.no_speculation),
        "single_branch": summary_json(outcome.single_branch),
    }


def machine_json(source: CostSource | None) -> dict:
    """Which machine the predictions are for, and the note about its step costs."""
    if source is None:
        return {}
    return {"hardware": source.title(), "costs_measured_on": source.costs.fingerprint,
            "note": source.note()}


def configuration_json(config) -> dict:
    speculation = config.speculation
    return {
        "model": config.model,
        "branches": config.branches,
        "speculation": None if speculation is None else {
            "method": speculation.method, "draft": speculation.draft,
            "gamma": speculation.gamma, "options": dict(speculation.options)},
        "temperature": config.temperature,
        "vote": config.vote.key(),
        "max_tokens": config.max_tokens,  # None: the profiled budget
    }


def summary_json(summary: TrialSummary | None) -> dict | None:
    if summary is None:
        return None
    data = {name: getattr(summary, name) for name in Figures.names()}
    return {"number": summary.number, "configuration": configuration_json(summary.configuration),
            **data, "feasible": summary.feasible, "max_num_seqs": summary.max_num_seqs}


def frontier_table(points: list[FrontierPoint], latency: LatencyObjective,
                   source: CostSource | None = None) -> Table:
    """Best accuracy per deadline; "changed" marks where the optimal configuration
    differs from the previous deadline's."""
    machine = f" on {source.title()}" if source is not None else ""
    table = Table(title=f"Best predicted accuracy vs deadline ({latency.describe()}){machine}")
    for header in ("deadline", "accuracy (95% CI)", latency.describe(),
                   *_bound_headers(latency), "configuration", "optimum"):
        table.add_column(header, justify="left" if header == "configuration" else "right",
                         no_wrap=True)
    for index, point in enumerate(points):
        if point.best is None:
            blanks = ["-"] * (1 + len(_bound_headers(latency)))
            table.add_row(format_duration(point.deadline_s), "-", *blanks,
                          "nothing meets it", "")
            continue
        best = point.best
        table.add_row(
            format_duration(point.deadline_s),
            _accuracy(best.accuracy, best.accuracy_low, best.accuracy_high),
            format_duration(best.latency_s), *_bound_cells(best, latency),
            best.configuration.label(),
            "changed" if point.changed else ("first" if index == 0 else "same"),
        )
    return table


def best_json(best: SimulationResult) -> dict:
    """A frontier point's best configuration and its predicted figures."""
    return {
        "configuration": configuration_json(best.configuration),
        "accuracy": best.accuracy,
        "accuracy_low": best.accuracy_low,
        "accuracy_high": best.accuracy_high,
        "latency_s": best.latency_s,
        "latency_upper_s": best.latency_upper_s,
        "mean_latency_s": best.mean_latency_s,
    }


def frontier_json(points: list[FrontierPoint], source: CostSource | None = None) -> dict:
    return {
        **machine_json(source),
        "points": [
            {
                "deadline_s": point.deadline_s,
                "changed": point.changed,
                "best": None if point.best is None else best_json(point.best),
            }
            for point in points
        ],
    }


def calibration_table(report: CalibrationReport, source: CostSource) -> Table:
    """Per checked engine configuration: measured / predicted latency on this machine."""
    table = Table(title=f"Calibration of {source.title()} against the step costs of "
                        f"{describe(source.costs)} ({report.elapsed_s:.0f} s)")
    for header in ("engine configuration", "branches", "requests", "measured / predicted",
                   "engine start"):
        table.add_column(header, justify="left" if header == "engine configuration"
                         else "right", no_wrap=True)
    for result in report.results:
        requests = sum(len(c.measured_latencies_s) for c in result.checks)
        table.add_row(result.slice.label(), ",".join(map(str, result.slice.branches)),
                      str(requests), f"{result.scale:.3f}", f"{result.engine_start_s:.0f} s")
    for skipped in report.skipped:
        table.add_row(skipped.label(), "-", "-", "(borrowed)", "not started", style="dim")
    table.caption = ("Unchecked configurations borrow the correction of the same model and "
                     "speculation, else of the model, else of the machine. `latts-tune run` "
                     "now uses these corrections on this machine.")
    return table


def calibration_json(report: CalibrationReport, source: CostSource) -> dict:
    return {
        **machine_json(source),
        "elapsed_s": report.elapsed_s,
        "checked": [{"configuration": r.slice.label(), "branches": list(r.slice.branches),
                     "scale": r.scale, "engine_start_s": r.engine_start_s,
                     "requests": sum(len(c.measured_latencies_s) for c in r.checks)}
                    for r in report.results],
        "not_checked": [s.label() for s in report.skipped],
    }


def preset_rows(records) -> list[dict]:
    """Stored presets for machines: name, study, trial and the prediction (seconds)."""
    rows = []
    for record in records:
        predicted = record.body.get("predicted", {})
        rows.append({"name": record.name, "study": record.study_name,
                     "trial": record.trial_number,
                     "accuracy": predicted.get("accuracy"),
                     "latency_statistic": _statistic_name(predicted),
                     "latency_s": predicted.get("latency_s"),
                     "latency_upper_s": predicted.get("latency_upper_s"),
                     "deadline_s": predicted.get("deadline_s")})
    return rows


def _statistic_name(predicted: dict) -> str:
    if predicted.get("latency_statistic") == "mean":
        return "mean latency"
    return f"p{(predicted.get('quantile') or 0.9) * 100:g} latency"


def presets_table(records) -> Table:
    """One row per stored preset, durations with units."""
    table = Table(title="Stored presets")
    for header in ("preset", "study", "trial", "accuracy", "latency (statistic)", "bound",
                   "deadline"):
        table.add_column(header, justify="left" if header in ("preset", "study") else "right",
                         no_wrap=True)
    for row in preset_rows(records):
        table.add_row(row["name"], row["study"], str(row["trial"]),
                      _maybe(row["accuracy"], "{:.1%}"),
                      f"{_maybe(row['latency_s'], format_duration)} ({row['latency_statistic']})",
                      _maybe(row["latency_upper_s"], format_duration),
                      _maybe(row["deadline_s"], format_duration))
    return table


def _maybe(value, form) -> str:
    if value is None:
        return "-"
    return form(value) if callable(form) else form.format(value)
def load_frontier_table(points: list[LoadPoint], deadline_s: float, latency: LatencyObjective,
                        source: CostSource | None = None) -> Table:
    """Best configuration per load at one deadline; "switch" marks where it changes."""
    machine = f" on {source.title()}" if source is not None else ""
    table = Table(title=f"Best predicted configuration vs load, {format_duration(deadline_s)} "
                        f"deadline ({latency.describe()} over requests){machine}")
    for header in ("load", "accuracy (95% CI)", latency.describe(), *_bound_headers(latency),
                   *_mean_header(latency), "configuration", "max-num-seqs", "optimum"):
        table.add_column(header, justify="left" if header == "configuration" else "right",
                         no_wrap=True)
    for index, point in enumerate(points):
        if point.best is None:
            blanks = ["-"] * (1 + len(_bound_headers(latency)) + len(_mean_header(latency)))
            table.add_row(point.load.key(), "-", *blanks, "nothing meets it", "-", "")
            continue
        best = point.best
        table.add_row(
            point.load.key(), _accuracy(best.accuracy, best.accuracy_low, best.accuracy_high),
            format_duration(best.latency_s), *_bound_cells(best, latency),
            *_mean_cell(best, latency), best.configuration.label(),
            str(best.max_num_seqs), "switch" if point.changed else (
                "first" if index == 0 else "same"))
    return table


def switch_lines(points: list[LoadPoint]) -> list[str]:
    """One line per switch point: between which loads the best configuration changes."""
    lines = []
    for before, after in zip(points, points[1:], strict=False):
        if after.changed:
            old = before.best.configuration.label() if before.best else "nothing"
            new = after.best.configuration.label() if after.best else "nothing"
            lines.append(f"Switch between {before.load.key()} and {after.load.key()}: "
                         f"{old} -> {new}")
    return lines or ["The best configuration is the same at every load."]


def load_frontier_json(points: list[LoadPoint], deadline_s: float,
                       source: CostSource | None = None) -> dict:
    return {
        **machine_json(source),
        "deadline_s": deadline_s,
        "points": [
            {
                "load": point.load.key(),
                "changed": point.changed,
                "best": None if point.best is None else {
                    **best_json(point.best), "max_num_seqs": point.best.max_num_seqs},
            }
            for point in points
        ],
    }

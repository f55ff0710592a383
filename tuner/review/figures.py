"""Plotly figures of a study and its profile, shared by the dashboard and the HTML report.

Figures take plain records (TrialSummary, CostPoint, AcceptanceRecord) and use Python
lists, not numpy arrays, so their JSON has no typed arrays that an older plotly.js (the
one bundled with optuna-dashboard) cannot read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.colors import qualitative

from storage.records import AcceptanceRecord, CostPoint
from tuner.core.configuration import LatencyObjective
from tuner.core.frontier import LoadPoint
from tuner.core.load import ConcurrencyLoad
from tuner.core.trials import TrialSummary

FEASIBLE_COLOR = "#1f77b4"
INFEASIBLE_COLOR = "#bbbbbb"
DEADLINE_COLOR = "#d62728"
BEST_COLOR = "#ff7f0e"
PREFILL_COLOR = "#9467bd"
DECODE_COLOR = "#2ca02c"
MARGIN = {"l": 70, "r": 30, "t": 60, "b": 60}
PALETTE = qualitative.Dark24  # enough distinct colours for a profile's many lines
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
LAYOUT = {"template": "plotly_white", "height": 460, "margin": MARGIN}


@dataclass(frozen=True)
class TimeUnit:
    """Figures show durations as the CLI does: milliseconds for sub-second deadlines."""

    name: str
    per_second: float

    @classmethod
    def for_deadline(cls, deadline_s: float) -> TimeUnit:
        return cls("ms", 1000.0) if deadline_s < 1 else cls("s", 1.0)

    def __call__(self, seconds: float) -> float:
        return seconds * self.per_second

    def text(self, seconds: float) -> str:
        return f"{self(seconds):.4g} {self.name}"


@dataclass(frozen=True)
class FrontierStep:
    """The best feasible trial once the deadline reaches `deadline_s` (its latency bound)."""

    deadline_s: float
    best: TrialSummary


def pareto_steps(summaries: Iterable[TrialSummary]) -> list[FrontierStep]:
    """Trials that raise the best accuracy as the allowed latency grows (order of the
    latency bound, which is what a deadline is compared with).

    Example: bounds 1 s (60%), 2 s (55%), 3 s (70%) give steps at 1 s and 3 s.
    """
    steps: list[FrontierStep] = []
    ordered = sorted(summaries, key=lambda s: (s.latency_upper_s, -s.accuracy,
                                               s.configuration.sort_key()))
    for summary in ordered:
        if not steps or summary.accuracy > steps[-1].best.accuracy:
            steps.append(FrontierStep(summary.latency_upper_s, summary))
    return steps


def latency_accuracy_figure(summaries: Sequence[TrialSummary], deadline_s: float,
                            latency: LatencyObjective, best: TrialSummary | None) -> go.Figure:
    """Accuracy vs the bound of the predicted latency statistic (what the deadline is
    compared with) of every trial, a bar down to the statistic itself; traces: feasible,
    infeasible, best, deadline."""
    unit = TimeUnit.for_deadline(deadline_s)
    feasible = [s for s in summaries if s.feasible]
    infeasible = [s for s in summaries if not s.feasible]
    figure = go.Figure()
    figure.add_trace(_trial_markers(feasible, "feasible", FEASIBLE_COLOR, "circle", unit))
    figure.add_trace(_trial_markers(infeasible, "infeasible", INFEASIBLE_COLOR, "x", unit))
    figure.add_trace(_trial_markers([best] if best else [], "best", BEST_COLOR, "star", unit,
                                    16))
    accuracies = [s.accuracy for s in summaries] or [0.0, 1.0]
    figure.add_trace(_deadline_line(deadline_s, min(accuracies), max(accuracies), unit))
    figure.update_layout(
        title=f"Accuracy vs predicted {latency.describe()} ({len(summaries)} trials; "
              f"markers at its {latency.confidence:.0%}-confidence bound)",
        xaxis_title=f"{latency.describe()}, bound ({unit.name})",
        yaxis_title="predicted accuracy", yaxis_tickformat=".0%", **LAYOUT,
    )
    return figure


def _trial_markers(summaries: Sequence[TrialSummary], name: str, color: str, symbol: str,
                   unit: TimeUnit, size: int = 8) -> go.Scatter:
    return go.Scatter(
        x=[unit(s.latency_upper_s) for s in summaries], y=[s.accuracy for s in summaries],
        error_x={"type": "data", "symmetric": False, "array": [0.0] * len(summaries),
                 "arrayminus": [unit(s.latency_upper_s - s.latency_s) for s in summaries],
                 "color": color, "thickness": 1, "width": 0},
        mode="markers", name=name, text=[_hover(s, unit) for s in summaries],
        hovertemplate="%{text}<extra></extra>",
        marker={"color": color, "symbol": symbol, "size": size},
    )


def _hover(summary: TrialSummary, unit: TimeUnit) -> str:
    return (f"trial {summary.number}: {summary.configuration.label()}<br>"
            f"accuracy {summary.accuracy:.1%} ({summary.accuracy_low:.1%}-"
            f"{summary.accuracy_high:.1%})<br>latency {unit.text(summary.latency_s)} "
            f"(bound {unit.text(summary.latency_upper_s)}), mean "
            f"{unit.text(summary.mean_latency_s)}")


def _deadline_line(deadline_s: float, low: float, high: float, unit: TimeUnit) -> go.Scatter:
    return go.Scatter(x=[unit(deadline_s)] * 2, y=[low, high], mode="lines",
                      name=f"deadline {unit.text(deadline_s)}",
                      line={"color": DEADLINE_COLOR, "dash": "dash", "width": 2},
                      hoverinfo="name")


def frontier_figure(summaries: Sequence[TrialSummary], deadline_s: float,
                    latency: LatencyObjective) -> go.Figure:
    """Best predicted accuracy vs deadline from the study's trials; traces: frontier,
    95% CI (low, high), deadline."""
    unit = TimeUnit.for_deadline(deadline_s)
    steps = pareto_steps(summaries)
    x_end = max([s.latency_upper_s for s in summaries] + [deadline_s]) * 1.05
    xs = [unit(step.deadline_s) for step in steps] + [unit(x_end)]
    last = steps[-1:] if steps else []
    figure = go.Figure()
    for name, value in (("95% CI low", lambda s: s.accuracy_low),
                        ("95% CI high", lambda s: s.accuracy_high)):
        figure.add_trace(go.Scatter(
            x=xs, y=[value(step.best) for step in steps + last], mode="lines",
            line={"shape": "hv", "width": 0}, name=name, showlegend=False,
            fill="tonexty" if name.endswith("high") else None,
            fillcolor="rgba(31,119,180,0.15)", hoverinfo="skip"))
    figure.add_trace(go.Scatter(
        x=xs, y=[step.best.accuracy for step in steps + last], mode="lines+markers",
        line={"shape": "hv", "color": FEASIBLE_COLOR}, name="best accuracy",
        text=[_hover(step.best, unit) for step in steps + last],
        hovertemplate="deadline %{x:.4g} " + unit.name + "<br>%{text}<extra></extra>"))
    accuracies = [step.best.accuracy for step in steps] or [0.0, 1.0]
    figure.add_trace(_deadline_line(deadline_s, min(accuracies), max(accuracies), unit))
    figure.update_layout(
        title=f"Best predicted accuracy vs deadline ({latency.describe()})",
        xaxis_title=f"deadline ({unit.name})", yaxis_title="predicted accuracy",
        yaxis_tickformat=".0%", **LAYOUT,
    )
    return figure


@dataclass(frozen=True)
class BreakdownBar:
    """One configuration of the latency breakdown: what it is and its stored figures."""

    role: str  # e.g. "best", "without speculation", "one branch"
    summary: TrialSummary


def breakdown_figure(bars: Sequence[BreakdownBar], latency: LatencyObjective,
                     deadline_s: float) -> go.Figure:
    """Mean prefill and decode seconds of the best trial beside its variants (N=1, no
    draft); traces: prefill, decode, latency statistic, deadline."""
    unit = TimeUnit.for_deadline(deadline_s)
    labels = [f"{bar.role}<br>{bar.summary.configuration.label()}" for bar in bars]
    figure = go.Figure()
    for name, color, value in (("prefill (mean)", PREFILL_COLOR, lambda s: s.prefill_s),
                               ("decode (mean)", DECODE_COLOR, lambda s: s.decode_s)):
        figure.add_trace(go.Bar(
            y=labels, x=[unit(value(bar.summary)) for bar in bars], name=name,
            orientation="h", marker_color=color,
            hovertemplate="%{x:.4g} " + unit.name + "<extra>" + name + "</extra>"))
    figure.add_trace(go.Scatter(
        y=labels, x=[unit(bar.summary.latency_s) for bar in bars], mode="markers+text",
        name=latency.describe(), marker={"symbol": "diamond", "size": 12, "color": "black"},
        text=[_bar_note(bar.summary) for bar in bars], textposition="middle right",
        hovertemplate="%{x:.4g} " + unit.name + "<extra>" + latency.describe() + "</extra>"))
    figure.add_trace(go.Scatter(x=[unit(deadline_s)] * 2, y=[labels[0], labels[-1]]
                                if labels else [], mode="lines",
                                name=f"deadline {unit.text(deadline_s)}",
                                line={"color": DEADLINE_COLOR, "dash": "dash"}))
    right_s = max([bar.summary.latency_s for bar in bars] + [deadline_s])
    layout = {**LAYOUT, "margin": {**MARGIN, "l": 260}}  # whole labels
    figure.update_layout(
        barmode="stack", title="Latency breakdown of the best trial and its variants",
        xaxis_title=unit.name, xaxis_range=[0, unit(right_s) * 1.6],  # room for the notes
        yaxis={"autorange": "reversed"}, **layout,
    )
    return figure


def _bar_note(summary: TrialSummary) -> str:
    return (f"  {summary.accuracy:.1%} acc, {summary.tokens_per_step:.2f} tok/step")


def speculation_source(point: CostPoint) -> str | None:
    """What drafted for a cost point ("tb-draft", "ngram", ...), None without speculation."""
    return point.speculation.source if point.speculation else None


def decode_cost_figure(points: Sequence[CostPoint], model: str,
                       source: str | None) -> go.Figure:
    """Measured step milliseconds vs live batch, one line per (gamma, context tokens), for
    one model and speculation source (None: without speculation)."""
    chosen = [p for p in points if p.model == model and speculation_source(p) == source
              and p.phase == "decode" and p.status == "ok"]
    figure = go.Figure()
    gammas = sorted({p.gamma for p in chosen})
    contexts = sorted({p.context_tokens for p in chosen})
    for gamma, context in sorted({(p.gamma, p.context_tokens) for p in chosen}):
        line = sorted((p for p in chosen if (p.gamma, p.context_tokens) == (gamma, context)),
                      key=lambda p: p.batch_size)
        name = f"ctx {context}" + (f", gamma {gamma}" if source else "")
        # Colour says the context, the dash the draft length: 16 lines stay apart.
        figure.add_trace(go.Scatter(
            x=[p.batch_size for p in line], y=[p.seconds_median * 1000 for p in line],
            mode="lines+markers", name=name,
            line={"color": PALETTE[contexts.index(context) % len(PALETTE)],
                  "dash": DASHES[gammas.index(gamma) % len(DASHES)]},
            hovertemplate="batch %{x}<br>%{y:.2f} ms/step<extra>" + name + "</extra>"))
    title = f"Decode step cost: {model}" + (f" with {source}" if source else "")
    figure.update_layout(title=title, xaxis_title="live branches (batch)",
                         yaxis_title="ms per step (median)", **LAYOUT)
    return figure


def acceptance_figure(records: Sequence[AcceptanceRecord]) -> go.Figure:
    """P(first k drafts accepted) vs position k, one line per (target, draft, gamma, T)."""
    figure = go.Figure()
    for record in sorted(records, key=lambda r: (r.target, r.speculation, r.temperature)):
        rates = list(record.position_rates())
        name = (f"{record.target} + {record.speculation.label()} "
                f"T={record.temperature:g} (E={1 + sum(rates):.2f} tok/step)")
        figure.add_trace(go.Scatter(
            x=list(range(1, len(rates) + 1)), y=rates, mode="lines+markers", name=name,
            hovertemplate="position %{x}: %{y:.1%}<extra>" + name + "</extra>"))
    figure.update_layout(colorway=PALETTE)
    figure.update_layout(title="Draft acceptance per position",
                         xaxis_title="draft position k", xaxis_dtick=1,
                         yaxis_title="P(first k drafts accepted)", yaxis_tickformat=".0%",
                         yaxis_range=[0, 1.02], **LAYOUT)
    return figure


def validation_figure(rows: Sequence[dict]) -> go.Figure:
    """Predicted vs measured p90 latency of validated presets (rows: preset, predicted_s,
    measured_s); the diagonal marks perfect predictions."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(
        x=[r["predicted_s"] for r in rows], y=[r["measured_s"] for r in rows],
        mode="markers", name="presets", text=[r["preset"] for r in rows],
        hovertemplate="%{text}<br>predicted %{x:.3f} s, measured %{y:.3f} s<extra></extra>"))
    top = max([r["predicted_s"] for r in rows] + [r["measured_s"] for r in rows] + [0.0])
    figure.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="measured = predicted",
                                line={"dash": "dot", "color": "gray"}))
    figure.update_layout(title="Validation: predicted vs measured p90 latency",
                         xaxis_title="predicted (s)", yaxis_title="measured (s)", **LAYOUT)
    return figure


def load_level(point: LoadPoint) -> float:
    """Where a load sits on the x axis: requests per second, or clients."""
    load = point.load
    return float(load.count) if isinstance(load, ConcurrencyLoad) else load.rate_rps() or 0.0


def load_frontier_figure(points: Sequence[LoadPoint], deadline_s: float,
                         latency: LatencyObjective) -> go.Figure:
    """Best predicted configuration per load at one deadline: its accuracy (left axis,
    labelled with the configuration), its latency statistic and bound (right axis) against
    the deadline, and a dotted line at each switch point; traces: accuracy, latency,
    bound, deadline."""
    shown = [p for p in points if p.best is not None]
    xs = [load_level(p) for p in shown]
    unit = ("clients" if points and isinstance(points[0].load, ConcurrencyLoad)
            else "requests/s")
    figure = go.Figure()
    figure.add_trace(go.Scatter(
        x=xs, y=[p.best.accuracy for p in shown if p.best], mode="lines+markers+text",
        name="best accuracy", line={"shape": "hv", "color": FEASIBLE_COLOR},
        text=[p.best.configuration.label() if p.changed or i == 0 else ""
              for i, p in enumerate(shown) if p.best],
        textposition="top right",
        hovertemplate="%{x} " + unit + "<br>%{y:.1%}<extra>best accuracy</extra>"))
    for name, color, value in (
            (latency.describe(), BEST_COLOR, lambda p: p.best.latency_s),
            (f"bound ({latency.confidence:.0%})", PREFILL_COLOR,
             lambda p: p.best.latency_upper_s)):
        figure.add_trace(go.Scatter(
            x=xs, y=[value(p) for p in shown], mode="lines+markers", name=name, yaxis="y2",
            line={"color": color, "dash": "dot"},
            hovertemplate="%{y:.3f} s<extra>" + name + "</extra>"))
    figure.add_trace(go.Scatter(
        x=[min(xs, default=0), max(xs, default=1)], y=[deadline_s, deadline_s], yaxis="y2",
        mode="lines", name=f"deadline {deadline_s:g} s",
        line={"color": DEADLINE_COLOR, "dash": "dash"}))
    for before, after in zip(points, points[1:], strict=False):
        if after.changed:
            figure.add_vline(x=(load_level(before) + load_level(after)) / 2,
                             line={"dash": "dot", "color": "gray"})
    figure.update_layout(
        title=f"Best predicted configuration vs load ({latency.describe()} <= "
              f"{deadline_s:g} s; dotted: switch points)",
        xaxis_title=f"load ({unit})", yaxis={"title": "predicted accuracy",
                                              "tickformat": ".0%"},
        yaxis2={"title": "seconds", "overlaying": "y", "side": "right"}, **LAYOUT)
    return figure

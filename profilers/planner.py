"""Budgeted decode profiling: measure first the points that most reduce the cost model's error.

A full grid (batch sizes x prompt lengths) costs minutes per point on a big model. Within
a time budget the planner measures a coarse design first: every batch size at the shortest
and at the longest prompt (the cost model is linear in context for a fixed batch, so the
two ends pin that line down best), batches in bisection order (the smallest and largest,
then the middle one, then the middles of the halves), so a budget that ends early still
spans the batch range. Then it measures repeatedly the candidate where a committee of
leave-one-out fits disagrees most: each fit leaves one measured point out, so candidates
whose prediction hinges on one point (the fit is worst held-out there) score highest. A
candidate whose predicted measuring time does not fit in the remaining budget is skipped.

The step-cost model is passed in (`fit(X, y)` returning a prediction function that does not
refuse rows outside the fitted range), so this module never imports the tuner: the CLI
passes `tuner.core.cost_model.unbounded_step_cost`, the tuner's model without its range checks.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from profilers.decode import DecodeGrid, profile_decode
from profilers.engine import Engine, SpeculativeConfig, model_name
from profilers.pool import EnginePool
from profilers.progress import ProgressReporter, SilentProgress
from storage import ProfileStore

logger = logging.getLogger(__name__)

# fit(X, y) with rows (batch, tokens) and seconds -> predict(rows) -> seconds, unbounded
Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
Measure = Callable[[int, int], float | None]  # (batch, prompt tokens) -> step s, None: failed
MIN_COMMITTEE_POINTS = 5  # a leave-one-out fit of 4 coefficients needs 4 points


@dataclass(frozen=True)
class MeasuredPoint:
    batch_size: int
    prompt_tokens: int
    step_s: float | None  # None: the engine failed at this point
    wall_s: float  # time spent measuring it


@dataclass(frozen=True)
class BudgetReport:
    """What a budgeted run measured, in order, and why it stopped."""

    points: tuple[MeasuredPoint, ...]
    elapsed_s: float
    stop_reason: str  # "grid complete", "budget", "max points"


def coarse_points(batch_sizes, prompt_tokens) -> list[tuple[int, int]]:
    """Every batch size at the shortest and longest prompt, batches in bisection order."""
    prompts = sorted(set(prompt_tokens))
    ends = list(dict.fromkeys((prompts[0], prompts[-1])))
    return [(batch, prompt) for batch in bisection_order(batch_sizes) for prompt in ends]


def bisection_order(values) -> list:
    """Sorted distinct `values` reordered: both ends, then the middle, then the middles of
    the halves, and so on (1, 2, 4, 8, 16 -> 1, 16, 4, 2, 8)."""
    ordered = sorted(set(values))
    if len(ordered) <= 2:
        return ordered
    chosen, intervals = [0, len(ordered) - 1], [(0, len(ordered) - 1)]
    while intervals:
        low, high = intervals.pop(0)
        if high - low < 2:
            continue
        middle = (low + high) // 2
        chosen.append(middle)
        intervals += [(low, middle), (middle, high)]
    return [ordered[index] for index in chosen]


def committee_spread(fit: Fit, X: np.ndarray, y: np.ndarray,
                     candidates: np.ndarray) -> np.ndarray:
    """Per candidate row, (max - min) / median of the leave-one-out fits' predictions."""
    predictions = []
    for left_out in range(len(y)):
        keep = np.arange(len(y)) != left_out
        predictions.append(_predict(fit(X[keep], y[keep]), candidates))
    stacked = np.array(predictions)
    middle = np.maximum(np.median(stacked, axis=0), 1e-12)
    return (stacked.max(axis=0) - stacked.min(axis=0)) / middle


def _predict(predictor, rows: np.ndarray) -> np.ndarray:
    return np.asarray(predictor(rows), dtype=float)


class BudgetPlanner:
    """Chooses the next grid point to measure; `features(b, p)` gives the fit's row."""

    def __init__(self, batch_sizes, prompt_tokens, fit: Fit,
                 features: Callable[[int, int], tuple[float, float]]) -> None:
        self.fit = fit
        self.features = features
        self.pending = [(b, p) for b in sorted(set(batch_sizes))
                        for p in sorted(set(prompt_tokens))]
        self.coarse = coarse_points(batch_sizes, prompt_tokens)
        self.measured: list[MeasuredPoint] = []

    def ranked(self) -> list[tuple[int, int]]:
        """Pending points, best first: coarse points in order, then by committee spread."""
        coarse = [point for point in self.coarse if point in self.pending]
        ok = [m for m in self.measured if m.step_s is not None]
        if coarse or len(ok) < MIN_COMMITTEE_POINTS:
            rest = [point for point in self.pending if point not in coarse]
            return coarse + rest
        X = np.array([self.features(m.batch_size, m.prompt_tokens) for m in ok], dtype=float)
        y = np.array([m.step_s for m in ok])
        candidates = np.array([self.features(*point) for point in self.pending], dtype=float)
        spread = committee_spread(self.fit, X, y, candidates)
        order = sorted(range(len(self.pending)), key=lambda index: -spread[index])
        return [self.pending[index] for index in order]

    def predicted_step_s(self, point: tuple[int, int]) -> float | None:
        ok = [m for m in self.measured if m.step_s is not None]
        if len(ok) < 2:
            return max((m.step_s for m in ok if m.step_s is not None), default=None)
        X = np.array([self.features(m.batch_size, m.prompt_tokens) for m in ok], dtype=float)
        model = self.fit(X, np.array([m.step_s for m in ok]))
        return float(_predict(model, np.array([self.features(*point)], dtype=float))[0])

    def record(self, point: MeasuredPoint) -> None:
        self.pending.remove((point.batch_size, point.prompt_tokens))
        self.measured.append(point)


def _estimated_wall_s(planner: BudgetPlanner, point: tuple[int, int]) -> float:
    """Measuring time scales with the step cost (same steps per point): wall/step ratio of
    the points measured so far times the predicted step cost; 0 before the first point."""
    ratios = [m.wall_s / m.step_s for m in planner.measured if m.step_s]
    predicted = planner.predicted_step_s(point)
    if not ratios or predicted is None:
        return 0.0
    return statistics.median(ratios) * max(predicted, 0.0)


def run_budgeted(planner: BudgetPlanner, measure: Measure, budget_s: float | None = None,
                 max_points: int | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> BudgetReport:
    """Measure points in the planner's order until the grid, the budget or `max_points`
    is exhausted. Points that would overrun the budget are skipped for cheaper ones."""
    started_s = clock()
    while planner.pending:
        if max_points is not None and len(planner.measured) >= max_points:
            return BudgetReport(tuple(planner.measured), clock() - started_s, "max points")
        remaining_s = None if budget_s is None else budget_s - (clock() - started_s)
        point = _next_affordable(planner, remaining_s)
        if point is None:
            return BudgetReport(tuple(planner.measured), clock() - started_s, "budget")
        before_s = clock()
        step_s = measure(*point)
        planner.record(MeasuredPoint(point[0], point[1], step_s, clock() - before_s))
    return BudgetReport(tuple(planner.measured), clock() - started_s, "grid complete")


def _next_affordable(planner: BudgetPlanner, remaining_s: float | None) -> tuple[int, int] | None:
    if remaining_s is not None and remaining_s <= 0:
        return None
    for point in planner.ranked():
        if remaining_s is None or _estimated_wall_s(planner, point) <= remaining_s:
            return point
    return None


def profile_decode_budgeted(engine: Engine, store: ProfileStore, grid: DecodeGrid,
                            budget_s: float, fit: Fit,
                            progress: ProgressReporter | None = None,
                            clock: Callable[[], float] = time.perf_counter) -> BudgetReport:
    """Profile decode cost on `grid`'s points, most informative first, within `budget_s`
    (nothing is measured when it is already spent).

    Each point is measured and stored by `profile_decode` (so a rerun skips stored points
    and costs nothing for them); a failed point is stored as failed and skipped.
    """
    progress = progress or SilentProgress()
    hardware, version = engine.hardware(), engine.engine_version()
    model = model_name(engine.model)
    speculation = engine.speculative.speculation if engine.speculative else None

    def measure(batch: int, prompt: int) -> float | None:
        one_point = replace(grid, batch_sizes=(batch,), prompt_tokens=(prompt,))
        profile_decode(engine, store, one_point)
        profile = store.load_profile_set(hardware.fingerprint, version)
        for point in profile.cost_points:
            if ((point.model, point.speculation) == (model, speculation)
                    and point.phase == "decode"
                    and (point.batch_size, point.context_tokens) == (
                        batch, grid.context_tokens(prompt))):
                return point.seconds_median if point.status == "ok" else None
        return None

    planner = BudgetPlanner(grid.batch_sizes, grid.prompt_tokens, fit,
                            lambda batch, prompt: (batch, grid.context_tokens(prompt)))
    progress.start(f"budgeted decode cost {model}"
                   + (f" + {speculation.label()}" if speculation else ""),
                   len(planner.pending))

    def measured_and_reported(batch: int, prompt: int) -> float | None:
        step_s = measure(batch, prompt)
        progress.advance()
        return step_s

    report = run_budgeted(planner, measured_and_reported, budget_s, clock=clock)
    logger.info("budgeted decode profile: %d of %d points in %.0f s (%s)", len(report.points),
                len(report.points) + len(planner.pending), report.elapsed_s, report.stop_reason)
    return report


@dataclass(frozen=True)
class ConfigurationRun:
    """One engine configuration of a budgeted command: its report, or None when it was not
    started because its share of the budget did not exceed an engine start."""

    speculative: SpeculativeConfig | None
    report: BudgetReport | None
    engine_start_s: float  # the last measured engine start when this one was decided


def profile_configurations_budgeted(pool: EnginePool, model: str, configs: list,
                                    store: ProfileStore, grid: DecodeGrid, budget_s: float,
                                    fit: Fit, progress: ProgressReporter | None = None,
                                    clock: Callable[[], float] = time.perf_counter
                                    ) -> list[ConfigurationRun]:
    """Share `budget_s` (engine starts included) equally among `configs` (speculative
    configs, None: no draft), re-dividing what is left before each one.

    A configuration whose share does not exceed the last engine start is not started:
    starting it would spend its whole share on the start and measure nothing, and its time
    goes to the configurations after it.
    """
    end_s, engine_start_s, runs = clock() + budget_s, 0.0, []
    for index, speculative in enumerate(configs):
        share_s = (end_s - clock()) / (len(configs) - index)
        if share_s <= engine_start_s:
            runs.append(ConfigurationRun(speculative, None, engine_start_s))
            continue
        before_s = clock()
        engine = pool.get(model, speculative)
        engine_start_s = clock() - before_s
        report = profile_decode_budgeted(engine, store, grid, share_s - engine_start_s, fit,
                                         progress, clock)
        runs.append(ConfigurationRun(speculative, report, engine_start_s))
    return runs

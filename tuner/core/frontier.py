"""The best configuration per deadline, or per load at one deadline, by exhaustive scoring
of the space."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tuner.core.configuration import LatencyObjective
from tuner.core.load import Load
from tuner.core.ranking import NoFeasibleConfiguration, best_of
from tuner.core.simulator import SimulationResult, Simulator
from tuner.core.space import SearchSpace


@dataclass(frozen=True)
class FrontierPoint:
    """The best configuration at one deadline (None: nothing meets it)."""

    deadline_s: float
    best: SimulationResult | None
    changed: bool  # the optimal configuration differs from the previous deadline's


def exhaustive_optimum(space: SearchSpace, simulator: Simulator, deadline_s: float,
                       latency: LatencyObjective) -> SimulationResult:
    """The simulator's best feasible configuration by brute force (the rank rule)."""
    results = [simulator.score(c, latency, deadline_s) for c in space.configurations()]
    return best_of(results, deadline_s, latency)


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
        best = _feasible_best(results, deadline_s, latency)
        current = best.configuration if best else None
        points.append(FrontierPoint(deadline_s, best, bool(points) and current != previous))
        previous = current
    return points


@dataclass(frozen=True)
class LoadPoint:
    """The best configuration under one load at a fixed deadline (None: nothing meets it)."""

    load: Load
    best: SimulationResult | None
    changed: bool  # the optimal configuration differs from the previous load's: a switch


def load_frontier(space: SearchSpace, simulator: Simulator, loads: Iterable[Load],
                  deadline_s: float, latency: LatencyObjective) -> list[LoadPoint]:
    """Best predicted configuration per load (in the order given), by exhaustive scoring of
    the space with the arrival replay; a switch point lies between a point marked
    `changed` and the one before it."""
    configs = space.configurations()
    points: list[LoadPoint] = []
    previous = None
    for load in loads:
        results = [simulator.score(c, latency, deadline_s, load) for c in configs]
        best = _feasible_best(results, deadline_s, latency)
        current = best.configuration if best else None
        points.append(LoadPoint(load, best, bool(points) and current != previous))
        previous = current
    return points


def _feasible_best(results: list[SimulationResult], deadline_s: float,
                   latency: LatencyObjective) -> SimulationResult | None:
    """The rank rule's best of `results`, None when none meets the deadline."""
    try:
        return best_of(results, deadline_s, latency)
    except NoFeasibleConfiguration:
        return None

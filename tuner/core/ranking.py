"""Which scored configuration is best: the one rank rule of run, frontier, measure mode,
workers and the dashboard.

Best = feasible (the latency statistic meets the deadline with the objective's confidence:
its upper bound is within the deadline), then higher accuracy, then lower latency
statistic, then the configuration's fixed order (so exact ties always resolve the same
way).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from storage import UserInputError
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.durations import format_duration


class Ranked(Protocol):
    """Anything with a configuration, an accuracy and a latency statistic (seconds)."""

    @property
    def configuration(self) -> Configuration: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def latency_s(self) -> float: ...


class Predicted(Ranked, Protocol):
    """A ranked item with the bound its latency statistic stays under (seconds)."""

    @property
    def latency_upper_s(self) -> float: ...


R = TypeVar("R", bound=Ranked)
F = TypeVar("F", bound=Predicted)


class NoFeasibleConfiguration(UserInputError):
    """No configuration meets the deadline; the message names the fastest one."""


def rank_key(item: Ranked) -> tuple:
    """Sort key, best first: higher accuracy, lower latency, configuration order."""
    return (-item.accuracy, item.latency_s, item.configuration.sort_key())


def meets(latency_s: float, deadline_s: float) -> bool:
    """Whether a latency statistic meets the deadline (the feasibility rule)."""
    return latency_s <= deadline_s


SATURATION_POINTS = 0.005  # accuracy within half a point of the best counts as the best


def feasible_range_s(items: Iterable[Predicted]) -> tuple[float, float]:
    """(the fastest bound, the fastest bound among configurations within
    SATURATION_POINTS of the best accuracy): deadlines worth asking for lie between,
    since a longer one buys no accuracy."""
    items = list(items)
    top = max(item.accuracy for item in items)
    return (min(item.latency_upper_s for item in items),
            min(item.latency_upper_s for item in items
                if item.accuracy >= top - SATURATION_POINTS))


def rank(items: Iterable[R], feasible=None) -> list[R]:
    """Feasible items, best first. `feasible(item)` decides feasibility; by default the
    item's own `feasible` flag."""
    check = feasible or (lambda item: item.feasible)
    return sorted((item for item in items if check(item)), key=rank_key)


def best_of(items: Iterable[F], deadline_s: float, latency: LatencyObjective) -> F:
    """The best predicted item whose latency bound meets `deadline_s`;
    NoFeasibleConfiguration naming the fastest one when none does."""
    items = list(items)
    ranked = rank(items, lambda item: meets(item.latency_upper_s, deadline_s))
    if not ranked:
        raise no_feasible_error(items, deadline_s, latency)
    return ranked[0]


def no_feasible_error(items: Iterable[Predicted], deadline_s: float,
                      latency: LatencyObjective) -> NoFeasibleConfiguration:
    """The error naming the fastest configuration, its latency statistic and bound."""
    quickest = min(items, key=lambda item: (item.latency_upper_s,
                                            item.configuration.sort_key()))
    bound = ""
    if quickest.latency_upper_s != quickest.latency_s:
        bound = (f" (at most {format_duration(quickest.latency_upper_s)} with "
                 f"{latency.confidence:.0%} confidence)")
    return NoFeasibleConfiguration(
        f"no configuration meets the {format_duration(deadline_s)} deadline; the fastest is "
        f"{quickest.configuration.label()} with {latency.describe()} "
        f"{format_duration(quickest.latency_s)}{bound}; allow at least "
        f"{format_duration(quickest.latency_upper_s)}"
    )

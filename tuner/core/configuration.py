"""The tuner's vocabulary: a configuration, the figures it is scored with, the objective.

A `Configuration` is one point of the search space: target model, branch count, the
speculation (a `storage.Speculation` or None), sampling temperature, vote rule and token
budget (None: the budget the accuracy profile was sampled with).
`Figures` are the predicted (or stored) numbers of a scored configuration; simulator
results, study trials and presets all carry exactly these fields, so a new metric is one
new field here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from profilers.statistics import LatencyStatistic
from profilers.voting import MAJORITY, VoteRule
from storage import Speculation
from tuner.core.margin import DEFAULT_CONFIDENCE


@dataclass(frozen=True)
class Configuration:
    """One point of the search space."""

    model: str
    branches: int
    speculation: Speculation | None
    temperature: float
    vote: VoteRule = MAJORITY
    max_tokens: int | None = None  # None: the profiled budget

    def label(self) -> str:
        """For people: "tb-large N=14 + tb-draft gamma=2 T=0.6 vote=window(k=3) max_tokens=40"."""
        speculation = f" + {self.speculation.label()}" if self.speculation else ""
        vote = "" if self.vote == MAJORITY else f" vote={self.vote.key()}"
        budget = "" if self.max_tokens is None else f" max_tokens={self.max_tokens}"
        return (f"{self.model} N={self.branches}{speculation} T={self.temperature:g}"
                f"{vote}{budget}")

    def sort_key(self) -> tuple:
        """A deterministic order for breaking exact ties (no speculation first, the profiled
        budget before shorter ones)."""
        speculation = self.speculation
        return (self.model, self.branches, speculation.source if speculation else "",
                speculation.gamma if speculation else 0, self.temperature, self.vote.key(),
                -(self.max_tokens or 1 << 30))

    def engine_key(self) -> tuple:
        """What an engine is started with: configurations sharing it share an engine."""
        return (self.model, self.speculation)


@dataclass(frozen=True)
class Figures:
    """Predicted figures of a configuration (seconds, fractions of questions)."""

    accuracy: float
    accuracy_low: float
    accuracy_high: float
    latency_s: float  # the objective's latency statistic
    latency_upper_s: float  # the bound it stays under with the objective's confidence
    mean_latency_s: float
    mean_generated_tokens: float
    prefill_s: float
    decode_s: float
    tokens_per_step: float

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Field names: the user attributes a trial stores."""
        return tuple(field.name for field in fields(cls))

    def figures(self) -> Figures:
        """Just the figures of this (possibly larger) record."""
        return Figures(**{name: getattr(self, name) for name in Figures.names()})


@dataclass(frozen=True)
class LatencyObjective(LatencyStatistic):
    """The latency statistic a deadline applies to, whether the deadline cuts branches (a
    hard cutoff drops branches still running at the deadline before the vote), and the
    confidence P with which the statistic must meet the deadline (0.5: no margin)."""

    cutoff: bool = False
    confidence: float = DEFAULT_CONFIDENCE

    def tag(self) -> str:
        tag = f"{super().tag()}-cutoff" if self.cutoff else super().tag()
        return tag if self.confidence == DEFAULT_CONFIDENCE else f"{tag}-p{self.confidence:g}"

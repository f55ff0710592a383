"""A margin with a meaning: the upper bound a latency statistic stays under with probability P.

A prediction is a distribution, not a number. Its spread has parts that are independent
and multiplicative, so they add as variances of the logarithm:

- *correction*: how well this machine's step costs are known for the configuration's slice
  (the standard error of its calibration, or the cost model's own error when nothing on
  this machine corrects it);
- *engine start*: a new engine runs a little faster or slower than the one measured (each
  start compiles and places its memory anew);
- *drift*: the machine's speed over time (shared machines; measured, not assumed);
- *sampling*: the statistic is taken over a finite number of requests (`questions`), so a
  p90 measured over 100 requests moves with which 100 they were.

The bound is statistic * exp(z_P * sd) with z_P the standard normal quantile of P. At P =
0.5 the bound is the statistic itself (no margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

DEFAULT_CONFIDENCE = 0.9
MARGIN_QUESTIONS = 100  # requests a measured statistic is taken over (validate's default)


def z_of(confidence: float) -> float:
    """The standard normal quantile of `confidence` (0.5 -> 0, 0.9 -> 1.28)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence})")
    return NormalDist().inv_cdf(confidence)


@dataclass(frozen=True)
class Uncertainty:
    """Standard deviations of log(statistic), by source (0.05 = about 5%)."""

    correction_sd: float = 0.0
    engine_start_sd: float = 0.0
    drift_sd: float = 0.0
    sampling_sd: float = 0.0

    @property
    def total_sd(self) -> float:
        return math.sqrt(self.correction_sd**2 + self.engine_start_sd**2 + self.drift_sd**2
                         + self.sampling_sd**2)

    def factor(self, confidence: float) -> float:
        """The bound as a multiple of the statistic (1.0 at confidence 0.5)."""
        return math.exp(z_of(confidence) * self.total_sd)

    def upper(self, latency_s: float, confidence: float) -> float:
        """The latency the statistic stays under with probability `confidence`."""
        return latency_s * self.factor(confidence)

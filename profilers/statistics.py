"""The latency statistic: the one place a quantile or mean of latencies is computed.

The simulator summarises predicted latencies with it, the executor's report and
validation summarise measured ones with it, so predicted and measured figures always
mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStatistic:
    """A quantile (default p90) or the mean of request latencies (seconds)."""

    statistic: str = "quantile"  # or "mean"
    quantile: float = 0.9

    def of(self, latencies_s) -> float:
        """The statistic of `latencies_s` (any array shape; all values count)."""
        values = np.asarray(latencies_s, dtype=float)
        if self.statistic == "mean":
            return float(values.mean())
        return float(np.quantile(values, self.quantile))

    def tag(self) -> str:
        """Short form for names: "q0.9" or "mean"."""
        return f"q{self.quantile:g}" if self.statistic == "quantile" else "mean"

    def describe(self) -> str:
        """For people: "p90 latency" or "mean latency"."""
        if self.statistic == "quantile":
            return f"p{self.quantile * 100:g} latency"
        return "mean latency"


P50 = LatencyStatistic("quantile", 0.5)
P90 = LatencyStatistic("quantile", 0.9)
MEAN = LatencyStatistic("mean")

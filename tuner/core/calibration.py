"""This machine's step costs from another machine's profile: corrections from latency checks.

A latency check (`storage.LatencyCheck`) runs a configuration on this machine, the way the
executor serves it, and sets each request's measured latency beside the latency the
simulator replays for the branch lengths that request produced, from the profiled
machine's step costs. Their ratio is how far those costs are off here, in the executor's
own shape (sampled branches, real acceptance, the front end's work), so one correction
covers another CPU, another engine build and speculation that is slower in practice than
on the profiler's fixed-length greedy runs.

Per slice (model, speculation) the correction is the geometric mean ratio; its standard
error combines the spread between requests and between engine starts. A slice without
checks borrows the pooled correction of the same model, else of the whole machine, with
the spread between slices added (a speculation borrows first from its other draft lengths).
`latts-tune calibrate` writes checks; so does every
validation (feedback), unless turned off.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from profilers import ExecutionReport
from profilers.engine import StreamingEngine
from storage import (
    Database,
    LatencyCheck,
    LatencyCheckStore,
    ProfileSet,
    ProfileStore,
    Speculation,
    speculation_columns,
)

SPREAD_BOUND_CONFIDENCE = 0.8  # a measured spread is used at this upper confidence bound


@dataclass(frozen=True)
class MeasuredSpread:
    """A standard deviation of log latency estimated from `samples` repeats; the margin
    uses its upper confidence bound, since few repeats estimate a spread loosely."""

    sd: float
    samples: int

    def bound(self) -> float:
        df = max(self.samples - 1, 1)
        return self.sd * math.sqrt(df / chi2.ppf(1 - SPREAD_BOUND_CONFIDENCE, df))


# Measured by benchmarks/drift.py (results/drift.md: AMD EPYC, 2 cores, 2026-11-27, tb-large
# with and without a draft, 5 rounds over 26 minutes): spread of a slice's mean latency
# between engine starts (10 pairs of starts: 10 degrees of freedom), and of the machine's
# speed between rounds (2 slices x 4 degrees of freedom).
ENGINE_START = MeasuredSpread(0.100, 11)
DRIFT = MeasuredSpread(0.058, 9)
DRIFT_SD = DRIFT.bound()
# Spread between slices of one machine, used until two slices are checked.
BETWEEN_SLICES_SD = 0.15


@dataclass(frozen=True)
class SliceCorrection:
    """Measured / replayed latency of one slice on this machine (1.0: no correction)."""

    scale: float
    log_sd: float  # standard error of log(scale)
    checks: int
    requests: int
    borrowed: bool = False  # from other slices of the model or machine

    def applied(self, seconds):
        return seconds * self.scale


NO_CORRECTION = SliceCorrection(1.0, 0.0, 0, 0)


@dataclass(frozen=True)
class _SliceEstimate:
    log_scale: float
    within_var: float  # variance of log ratios between requests of one check
    check_means: tuple[float, ...]
    requests: int


class Corrections:
    """Per-slice corrections from this machine's latency checks."""

    def __init__(self, checks: Iterable[LatencyCheck]) -> None:
        self.checks = tuple(checks)
        by_slice: dict[tuple[str, Speculation | None], list[LatencyCheck]] = {}
        for check in self.checks:
            by_slice.setdefault((check.model, check.speculation), []).append(check)
        self._estimates = {key: _estimate(group) for key, group in by_slice.items()}
        self.engine_start_sd = _engine_start_sd(self._estimates.values())

    def __bool__(self) -> bool:
        return bool(self.checks)

    def for_slice(self, model: str, speculation: Speculation | None) -> SliceCorrection:
        """The slice's correction, borrowed from its model or the machine when unchecked."""
        if not self._estimates:
            return NO_CORRECTION
        own = self._estimates.get((model, speculation))
        if own is not None:
            return self._corrected(own)
        source = speculation.source_key if speculation else None
        same_source = [e for (m, s), e in self._estimates.items()
                       if m == model and (s.source_key if s else None) == source]
        same_model = [e for (m, _), e in self._estimates.items() if m == model]
        return self._borrowed(same_source or same_model or list(self._estimates.values()))

    def describe(self) -> str:
        """E.g. "2 validations and 6 calibration runs"."""
        kinds = Counter("validation" if c.source.startswith("validate") else "calibration run"
                        for c in self.checks)
        parts = [f"{count} {kind}{'s' if count != 1 else ''}"
                 for kind, count in sorted(kinds.items(), reverse=True)]
        return " and ".join(parts)

    def _corrected(self, estimate: _SliceEstimate) -> SliceCorrection:
        checks = len(estimate.check_means)
        variance = (self.engine_start_sd**2 + estimate.within_var / max(estimate.requests, 1)
                    * checks) / checks
        return SliceCorrection(math.exp(estimate.log_scale), math.sqrt(variance), checks,
                               estimate.requests)

    def _borrowed(self, estimates: list[_SliceEstimate]) -> SliceCorrection:
        means = [e.log_scale for e in estimates]
        spread = float(np.std(means, ddof=1)) if len(means) >= 2 else BETWEEN_SLICES_SD
        variance = spread**2 + self.engine_start_sd**2 / len(means)
        return SliceCorrection(math.exp(float(np.mean(means))), math.sqrt(variance),
                               sum(len(e.check_means) for e in estimates),
                               sum(e.requests for e in estimates), borrowed=True)


def log_ratios(check: LatencyCheck) -> np.ndarray:
    """log(measured / replayed) per request of a check."""
    measured = np.asarray(check.measured_latencies_s, dtype=float)
    replayed = np.asarray(check.replayed_latencies_s, dtype=float)
    keep = (measured > 0) & (replayed > 0)
    return np.log(measured[keep] / replayed[keep])


def _estimate(checks: list[LatencyCheck]) -> _SliceEstimate:
    ratios = [log_ratios(check) for check in checks]
    ratios = [r for r in ratios if r.size]
    means = tuple(float(r.mean()) for r in ratios)
    within = [float(r.var(ddof=1)) for r in ratios if r.size >= 2]
    return _SliceEstimate(
        log_scale=float(np.mean(means)) if means else 0.0,
        within_var=float(np.mean(within)) if within else 0.0,
        check_means=means,
        requests=sum(r.size for r in ratios),
    )


def _engine_start_sd(estimates: Iterable[_SliceEstimate]) -> float:
    """Spread of a slice's mean between checks (engine starts), pooled over slices with
    several checks, at its upper confidence bound; the measured default until at least as
    many repeats are stored here as the default was measured from."""
    squares, df = 0.0, 0
    for estimate in estimates:
        means = estimate.check_means
        if len(means) >= 2:
            squares += float(np.sum((np.array(means) - np.mean(means)) ** 2))
            df += len(means) - 1
    if df + 1 < ENGINE_START.samples:
        return ENGINE_START.bound()
    return MeasuredSpread(math.sqrt(squares / df), df + 1).bound()


def store_check(db: Database, engine: StreamingEngine, profile: ProfileSet,
                config, task: str, source: str, report: ExecutionReport,
                replayed) -> LatencyCheck:
    """Store a run of `config` on `engine`'s machine as a latency check against the step
    costs of `profile`'s machine."""
    hardware, version = engine.hardware(), engine.engine_version()
    ProfileStore(db).upsert_hardware(hardware)
    return LatencyCheckStore(db).add(LatencyCheck(
        hardware_fingerprint=hardware.fingerprint, engine_version=version,
        cost_fingerprint=profile.hardware.fingerprint,
        cost_engine_version=profile.engine_version,
        model=config.model, branches=config.branches, temperature=config.temperature,
        task=task, source=source,
        measured_latencies_s=tuple(float(o.latency_s) for o in report.outcomes),
        replayed_latencies_s=tuple(float(r) for r in replayed),
        **speculation_columns(config.speculation)))

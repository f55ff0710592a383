"""Fitted engine-step cost: seconds per decode step (or per prefill) from measured points.

One `StepCostModel` per (model, speculation, phase). The model is
``seconds = c0 + c1*batch + c2*tokens + c3*batch*tokens`` with non-negative coefficients,
fitted by least squares on relative error: decode is a fixed per-step overhead plus work
per sequence plus KV reads per sequence and token, and non-negative terms keep the cost
non-decreasing in batch and context. Queries above the measured batch or token range, or
below the measured batch range, are refused, never extrapolated. Token counts below the
smallest measured one are costed at that smallest one: an upper bound, because the cost
never decreases with tokens (decode profiles start at prompt + half the decoded tokens, so
short prompts with short answers fall just below the grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sklearn
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from storage import CostPoint, ProfileSet, Speculation, UserInputError

FEATURE_NAMES = {
    "decode": ("batch_size", "context_tokens"),
    "prefill": ("batch_size", "prompt_tokens"),
}
MIN_POINTS = 2


class OutOfProfiledRange(UserInputError):
    """A cost query falls outside the measured batch/token range."""


class ProfileIncomplete(UserInputError):
    """The profile lacks the measurements a computation needs."""


class StepCostModel(RegressorMixin, BaseEstimator):
    """Seconds per engine step as a function of (batch_size, tokens).

    `label` names the profile slice in error messages. After `fit`: `coef_` (4 terms),
    `feature_names_in_`, `batch_range_`, `token_range_`, `n_points_`,
    `loo_relative_errors_` (leave-one-out |pred - y| / y per point, nan if too few points),
    `sklearn_version_`.
    """

    def __init__(self, phase: str = "decode", label: str = ""):
        self.phase = phase
        self.label = label

    def fit(self, X, y) -> StepCostModel:
        features, seconds = _as_features(X), np.asarray(y, dtype=float)
        if len(seconds) < MIN_POINTS:
            raise ProfileIncomplete(
                f"{self.label or 'cost model'}: {len(seconds)} measured point(s); "
                f"need at least {MIN_POINTS}: profile more batch sizes/context lengths"
            )
        self.coef_ = _fit_coefficients(features, seconds)
        self.feature_names_in_ = np.array(FEATURE_NAMES[self.phase], dtype=object)
        self.n_features_in_ = 2
        self.batch_range_ = (int(features[:, 0].min()), int(features[:, 0].max()))
        self.token_range_ = (int(features[:, 1].min()), int(features[:, 1].max()))
        self.n_points_ = len(seconds)
        self.loo_relative_errors_ = _leave_one_out_errors(features, seconds)
        self.sklearn_version_ = sklearn.__version__
        return self

    def predict(self, X) -> np.ndarray:
        """Seconds for each (batch_size, tokens) row; raises OutOfProfiledRange outside."""
        check_is_fitted(self, "coef_")
        features = _as_features(X)
        self.check_range(features)
        batch = features[:, 0]
        tokens = np.maximum(features[:, 1], self.token_range_[0])
        c0, c_batch, c_tokens, c_both = self.coef_
        # Same as _design(features) @ coef_, without building the design matrix.
        return c0 + batch * (c_batch + c_both * tokens) + c_tokens * tokens

    def check_range(self, features: np.ndarray) -> None:
        """Raise OutOfProfiledRange naming the measured range for a refused row."""
        check_is_fitted(self, "coef_")
        batch, tokens = features[:, 0], features[:, 1]
        low, high = self.batch_range_
        if batch.size and (batch.min() < low or batch.max() > high):
            self._refuse(0, batch.min() if batch.min() < low else batch.max(), self.batch_range_)
        if tokens.size and tokens.max() > self.token_range_[1]:
            self._refuse(1, tokens.max(), self.token_range_)

    def _refuse(self, column: int, value: float, measured: tuple[int, int]) -> None:
        raise OutOfProfiledRange(
            f"{self.label or 'cost model'}: {self.feature_names_in_[column]} {value:g} is "
            f"outside the measured range {measured[0]}..{measured[1]}; profile that range "
            "(no extrapolation)"
        )

    @property
    def loo_relative_error_(self) -> float:
        """Mean leave-one-out relative error (0.05 = 5%)."""
        check_is_fitted(self, "coef_")
        return float(np.nanmean(self.loo_relative_errors_))


@dataclass(frozen=True)
class CostKey:
    """Which measured slice a cost model covers."""

    model: str
    speculation: Speculation | None
    phase: str

    @classmethod
    def of(cls, point: CostPoint) -> CostKey:
        return cls(point.model, point.speculation, point.phase)

    def label(self) -> str:
        speculation = f" + {self.speculation.label()}" if self.speculation else ""
        return f"{self.phase} cost of {self.model}{speculation}"


def cost_points_by_key(profile: ProfileSet) -> dict[CostKey, list[CostPoint]]:
    """Successful cost points grouped by (model, speculation, phase)."""
    groups: dict[CostKey, list[CostPoint]] = {}
    for point in profile.cost_points:
        if point.status != "ok" or not point.seconds_samples:
            continue
        groups.setdefault(CostKey.of(point), []).append(point)
    return groups


def smallest_failed_batches(profile: ProfileSet) -> dict[CostKey, int]:
    """Per slice, the smallest batch size the engine failed at (e.g. out of memory)."""
    smallest: dict[CostKey, int] = {}
    for point in profile.cost_points:
        if point.status == "ok":
            continue
        key = CostKey.of(point)
        smallest[key] = min(point.batch_size, smallest.get(key, point.batch_size))
    return smallest


def fit_cost_model(key: CostKey, points: list[CostPoint]) -> StepCostModel:
    """Fit one model on the medians of `points`."""
    X = np.array([(point.batch_size, point.context_tokens) for point in points], dtype=float)
    y = np.array([point.seconds_median for point in points])
    return StepCostModel(phase=key.phase, label=key.label()).fit(X, y)


def _as_features(X) -> np.ndarray:
    features = np.asarray(X, dtype=float)
    if features.ndim != 2 or features.shape[1] != 2:
        raise ValueError(f"expected rows of (batch_size, tokens), got shape {features.shape}")
    return features


def _design(features: np.ndarray) -> np.ndarray:
    batch, tokens = features[:, 0], features[:, 1]
    return np.column_stack([np.ones_like(batch), batch, tokens, batch * tokens])


def _fit_coefficients(features: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    # Dividing each row by y makes least squares minimise relative error; scaling columns
    # keeps the solver well conditioned when tokens are in the thousands.
    design = _design(features) / seconds[:, None]
    scale = np.maximum(np.abs(design).max(axis=0), 1e-300)
    coef, _ = nnls(design / scale, np.ones_like(seconds))
    return coef / scale


def _leave_one_out_errors(features: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    if len(seconds) < 3:
        return np.full(len(seconds), np.nan)
    errors = np.empty(len(seconds))
    for index in range(len(seconds)):
        keep = np.arange(len(seconds)) != index
        coef = _fit_coefficients(features[keep], seconds[keep])
        predicted = float((_design(features[index : index + 1]) @ coef)[0])
        errors[index] = abs(predicted - seconds[index]) / seconds[index]
    return errors


def unbounded_step_cost(X, y):
    """Fit the step-cost form on (X, y); return seconds(rows) with no range checks.

    For planning which points to measure next (`profilers.planner`), where predictions
    outside a subset's range are the point; never for scoring configurations.
    """
    coef = _fit_coefficients(_as_features(X), np.asarray(y, dtype=float))
    return lambda rows: _design(_as_features(rows)) @ coef

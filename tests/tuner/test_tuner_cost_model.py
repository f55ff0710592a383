"""The step-cost model keeps the scikit-learn contract and never extrapolates."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from tuner.core.cost_model import MIN_POINTS, OutOfProfiledRange, ProfileIncomplete, StepCostModel


def grid(seconds, batches=(1, 2, 4, 8), contexts=(16, 128, 512)):
    X = np.array([(b, c) for b in batches for c in contexts], dtype=float)
    return X, np.array([seconds(b, c) for b, c in X])


def test_unfitted_predict_raises_not_fitted():
    with pytest.raises(NotFittedError):
        StepCostModel().predict([[1, 16]])


def test_fit_returns_self_and_sets_fitted_attributes():
    model = StepCostModel(phase="decode", label="m")
    X, y = grid(lambda b, c: 0.01 + 0.001 * b + 2e-6 * b * c)
    assert model.fit(X, y) is model
    assert list(model.feature_names_in_) == ["batch_size", "context_tokens"]
    assert model.batch_range_ == (1, 8) and model.token_range_ == (16, 512)
    assert model.sklearn_version_
    assert clone(model).get_params() == {"phase": "decode", "label": "m"}


def test_linear_cost_is_reproduced_with_zero_held_out_error():
    X, y = grid(lambda b, c: 0.01 + 0.001 * b + 1e-5 * c + 2e-6 * b * c)
    model = StepCostModel().fit(X, y)
    assert model.predict([[3, 300]]) == pytest.approx([0.01 + 0.003 + 0.003 + 2e-6 * 900])
    assert model.loo_relative_error_ == pytest.approx(0, abs=1e-9)


def test_held_out_error_reflects_noise():
    rng = np.random.default_rng(0)
    X, y = grid(lambda b, c: 0.01 + 0.001 * b)
    noisy = y * (1 + rng.normal(0, 0.05, size=len(y)))
    model = StepCostModel().fit(X, noisy)
    assert 0.01 < model.loo_relative_error_ < 0.2
    assert len(model.loo_relative_errors_) == len(y)


@pytest.mark.parametrize(("query", "fragment"), [
    ([[16, 100]], "batch_size 16 is outside the measured range 1..8"),
    ([[2, 100], [2, 600]], "context_tokens 600 is outside the measured range 16..512"),
])
def test_queries_outside_the_measured_range_are_refused(query, fragment):
    model = StepCostModel(label="decode cost of m").fit(*grid(lambda b, c: 0.01))
    with pytest.raises(OutOfProfiledRange, match=f"decode cost of m: {fragment}"):
        model.predict(query)


def test_too_few_points_is_refused():
    with pytest.raises(ProfileIncomplete, match=f"need at least {MIN_POINTS}"):
        StepCostModel(label="x").fit([[1, 16]], [0.01])


def test_tokens_below_the_range_cost_the_smallest_measured_point():
    # Cost never decreases with tokens, so the smallest measured point bounds it from above.
    model = StepCostModel().fit(*grid(lambda b, c: 0.01 + 1e-4 * c))
    assert model.predict([[2, 4]]) == pytest.approx(model.predict([[2, 16]]))

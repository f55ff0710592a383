"""The latency axis of the simulator: when each branch finishes (seconds).

Branches decode together and the batch shrinks as they finish. With lengths sorted
L(1) <= ... <= L(N):

    decode finish of branch i = sum_{j<=i} (L(j) - L(j-1)) / E(gamma) * step(B_j, ctx_j)

with B_j = N - j + 1 live branches and ctx_j the context in the middle of the segment. With
a speculation whose acceptance varies, segments are cut where branches finish in steps.

A vote rule that stops early answers once the first `used` branches in finishing order have
finished (`stop_seconds`); the branches it aborts do not slow the ones before them, which
decoded with the whole batch live.
"""

from __future__ import annotations

import numpy as np

from tuner.core.cost_model import StepCostModel


def prefill_seconds(prefill: StepCostModel, branches: int, prompt_tokens: np.ndarray
                    ) -> np.ndarray:
    """Prefill seconds per question [Q] for `branches` branches sharing the prompt."""
    return prefill.predict(np.column_stack([np.full_like(prompt_tokens, branches),
                                            prompt_tokens]))


def finish_by_tokens(segment_tokens: np.ndarray, step_features: np.ndarray,
                     tokens_per_step: float, decode: StepCostModel) -> np.ndarray:
    """Decode finish time [Q, S, N] of branches in finishing order, each segment costed at
    its live batch and mid-segment context (`step_features`, rows of (batch, context))."""
    step_s = decode.predict(step_features).reshape(segment_tokens.shape)
    return np.cumsum(segment_tokens / tokens_per_step * step_s, axis=2)


def finish_by_steps(steps: np.ndarray, prompt_tokens: np.ndarray, tokens_per_step: float,
                    decode: StepCostModel) -> np.ndarray:
    """Decode finish time of every branch [Q, S, N], in the order of `steps`' last axis."""
    order = np.argsort(steps, axis=2, kind="stable")
    ordered = np.take_along_axis(steps, order, axis=2)
    previous = np.concatenate([np.zeros_like(ordered[..., :1]), ordered[..., :-1]], axis=2)
    n = steps.shape[2]
    live = np.broadcast_to(n - np.arange(n, dtype=float), steps.shape)
    context = prompt_tokens[:, None, None] + tokens_per_step * (previous + ordered) / 2
    step_s = decode.predict(np.column_stack([live.ravel(), context.ravel()])
                            ).reshape(steps.shape)
    finish = np.cumsum((ordered - previous) * step_s, axis=2)
    result = np.empty_like(finish)
    np.put_along_axis(result, order, finish, axis=2)
    return result


def stop_seconds(finish_s: np.ndarray, used: np.ndarray) -> np.ndarray:
    """When the vote answers [Q, S]: the latest finish among the first `used` [Q, S]
    branches of `finish_s` [Q, S, N] (finishing order by tokens; with acceptance noise a
    branch before may finish later, and the answer waits for it)."""
    waited = np.maximum.accumulate(finish_s, axis=2)
    return np.take_along_axis(waited, (used - 1)[..., None], axis=2)[..., 0]

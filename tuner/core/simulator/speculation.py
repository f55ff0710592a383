"""The speculation axis of the simulator: expected tokens per verification step and the
spread of steps a branch needs, from the measured per-position acceptance counts.

E(gamma) = 1 + sum_{k<gamma} P(first k+1 drafts accepted). Speculative decoding is
lossless, so lengths and answers do not depend on the speculation; only step counts do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from storage import AcceptanceRecord, Speculation
from tuner.core.cost_model import ProfileIncomplete

logger = logging.getLogger(__name__)


def _pooled(records: Sequence[AcceptanceRecord], gamma: int) -> tuple[np.ndarray, int]:
    """Accepted counts per position k < gamma and target steps, summed over `records`."""
    steps = sum(record.steps for record in records)
    if steps == 0:
        raise ProfileIncomplete("acceptance records hold no drafts; profile acceptance again")
    accepted = np.zeros(gamma)
    for record in records:
        accepted += np.asarray(record.accepted_per_position[:gamma], dtype=float)
    return accepted, steps


def position_rates(records: Sequence[AcceptanceRecord], gamma: int) -> np.ndarray:
    """P(first k+1 drafts accepted) for k < gamma, pooled over `records`."""
    accepted, num_drafts = _pooled(records, gamma)
    return accepted / num_drafts


def tokens_per_step(records: Sequence[AcceptanceRecord], gamma: int) -> float:
    """E(gamma) = 1 + sum_{k<gamma} accepted_per_position[k] / steps (summed records)."""
    if gamma == 0:
        return 1.0
    accepted, num_drafts = _pooled(records, gamma)
    return 1.0 + float(accepted.sum()) / num_drafts


def tokens_per_step_variance(records: Sequence[AcceptanceRecord], gamma: int) -> float:
    """Variance of tokens a branch gains per verification step.

    With p_k = P(first k drafts accepted), accepted A has P(A >= k) = p_k, so
    E[A] = sum p_k and E[A^2] = sum (2k - 1) p_k.
    """
    rates = position_rates(records, gamma)
    k = np.arange(1, gamma + 1)
    return float(max(0.0, ((2 * k - 1) * rates).sum() - rates.sum() ** 2))


def matching_records(acceptance: Sequence[AcceptanceRecord], target: str,
                     speculation: Speculation, task: str,
                     temperature: float) -> list[AcceptanceRecord]:
    """Records of `target` with the same speculation source and gamma >= its gamma: same
    task preferred, then the closest temperature, then exact gamma, then the smallest
    larger gamma (its first positions)."""
    candidates = [
        r for r in acceptance
        if r.target == target and r.speculation.source_key == speculation.source_key
        and r.gamma >= speculation.gamma
    ]
    if not candidates:
        raise ProfileIncomplete(
            f"no acceptance profile of {target} with {speculation.source} at gamma >= "
            f"{speculation.gamma}; profile acceptance first"
        )
    if any(r.task == task for r in candidates):
        candidates = [r for r in candidates if r.task == task]
    best = min(candidates, key=lambda r: (abs(r.temperature - temperature),
                                          r.gamma != speculation.gamma, r.gamma))
    if best.temperature != temperature:
        logger.warning("acceptance of %s/%s measured at temperature %g, used for %g",
                       target, speculation.source, best.temperature, temperature)
    return [r for r in candidates
            if (r.task, r.temperature, r.gamma) == (best.task, best.temperature, best.gamma)]


def branch_steps(lengths: np.ndarray, mean: float, variance: float, gamma: int,
                 seed: int) -> np.ndarray:
    """Verification steps each branch needs for its tokens [Q, S, N].

    Accepted drafts vary step to step, so the step count to L tokens is random: by the
    renewal central limit theorem about Normal(L / mean, L * variance / mean^3), drawn with
    a fixed seed and clipped to what gamma allows. The slowest of N branches sets the
    latency, so this variance raises latency with N (E[max] > max E).
    """
    rng = np.random.default_rng([seed, *lengths.shape, gamma])
    noise = rng.standard_normal(lengths.shape)
    steps = lengths / mean + noise * np.sqrt(lengths * variance / mean**3)
    return np.clip(np.rint(steps), np.ceil(lengths / (gamma + 1)), np.maximum(lengths, 1))

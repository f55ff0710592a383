"""The simulator against closed forms on hand-built profiles."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tuner_synthetic import (
    acceptance,
    constant_profile,
    cost_grid,
    drafted,
    family_profile,
    profile,
    samples,
)

from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.cost_model import OutOfProfiledRange, ProfileIncomplete
from tuner.core.simulator import Simulator

TASK = "arithmetic"
STEP_S, PREFILL_S = 0.01, 0.1


def plain(n: int, model: str = "m") -> Configuration:
    return Configuration(model, n, None, 1.0)


def test_one_branch_latency_is_prefill_plus_tokens_times_step():
    lengths = [10, 40, 70, 100, 130]
    rows = [[("1", True, length)] for length in lengths]
    result = Simulator(constant_profile(rows), TASK).score(plain(1), LatencyObjective("mean"))
    expected = [PREFILL_S + length * STEP_S for length in lengths]
    assert result.latency_s == pytest.approx(np.mean(expected))
    assert result.prefill_s == pytest.approx(PREFILL_S)
    assert result.decode_s == pytest.approx(np.mean(lengths) * STEP_S)
    assert result.mean_generated_tokens == pytest.approx(np.mean(lengths))


def test_quantile_and_mean_statistics_over_questions():
    lengths = np.arange(10, 210, 10)
    rows = [[("1", True, int(length))] for length in lengths]
    simulator = Simulator(constant_profile(rows), TASK)
    latencies = PREFILL_S + lengths * STEP_S
    for quantile in (0.5, 0.9, 1.0):
        result = simulator.score(plain(1), LatencyObjective("quantile", quantile))
        assert result.latency_s == pytest.approx(np.quantile(latencies, quantile))
    mean = simulator.score(plain(1), LatencyObjective("mean"))
    assert mean.latency_s == pytest.approx(latencies.mean())
    assert mean.mean_latency_s == pytest.approx(latencies.mean())


def batch_context_profile(rows, prompt_tokens: int):
    # step(B, ctx) = a + b*B + c*ctx: linear, so the fitted model reproduces it exactly.
    step = lambda b, c: 0.01 + 0.002 * b + 1e-5 * c  # noqa: E731
    return profile(
        costs=cost_grid("m", step) + cost_grid("m", lambda b, p: 0.05 + 0.01 * b,
                                              phase="prefill"),
        accuracy=samples("m", rows, prompt_tokens=prompt_tokens),
    )


@pytest.mark.parametrize("n", [1, 3, 5])
def test_equal_lengths_decode_at_full_batch(n):
    length, prompt = 120, 32
    rows = [[("1", True, length)] * 5 for _ in range(3)]
    result = Simulator(batch_context_profile(rows, prompt), TASK).score(
        plain(n), LatencyObjective("mean"))
    # All branches finish together: one segment of `length` tokens at batch n, whose
    # mid-segment context is prompt + length / 2.
    step_s = 0.01 + 0.002 * n + 1e-5 * (prompt + length / 2)
    assert result.latency_s == pytest.approx(0.05 + 0.01 * n + length * step_s)


def test_shrinking_batch_segments():
    prompt = 10
    rows = [[("1", True, 50), ("1", True, 150)]]
    result = Simulator(batch_context_profile(rows, prompt), TASK).score(
        plain(2), LatencyObjective("mean"))
    step = lambda b, c: 0.01 + 0.002 * b + 1e-5 * c  # noqa: E731
    expected = (0.05 + 0.01 * 2 + 50 * step(2, prompt + 25) + 100 * step(1, prompt + 100))
    assert result.latency_s == pytest.approx(expected)


def speculative_profile(rates, gamma: int):
    rows = [[("1", True, 90)] * 3 for _ in range(4)]
    costs = (cost_grid("m", lambda b, c: STEP_S)
             + cost_grid("m", lambda b, c: 2 * STEP_S, draft="d", gamma=gamma)
             + cost_grid("m", lambda b, p: PREFILL_S, phase="prefill"))
    return profile(costs=costs, accuracy=samples("m", rows),
                   acceptance_records=[acceptance("m", "d", gamma, rates)])


@pytest.mark.parametrize("gamma", [1, 2, 4])
def test_acceptance_zero_gives_one_token_per_step(gamma):
    simulator = Simulator(speculative_profile([0.0] * gamma, gamma), TASK)
    result = simulator.score(Configuration("m", 2, drafted("d", gamma), 1.0),
                             LatencyObjective("mean"))
    assert result.tokens_per_step == 1.0
    assert result.latency_s == pytest.approx(PREFILL_S + 90 * 2 * STEP_S)


@pytest.mark.parametrize("gamma", [1, 2, 4])
def test_full_acceptance_gives_gamma_plus_one_tokens_per_step(gamma):
    simulator = Simulator(speculative_profile([1.0] * gamma, gamma), TASK)
    result = simulator.score(Configuration("m", 2, drafted("d", gamma), 1.0),
                             LatencyObjective("mean"))
    assert result.tokens_per_step == gamma + 1
    assert result.latency_s == pytest.approx(PREFILL_S + 90 / (gamma + 1) * 2 * STEP_S)


def test_shorter_gamma_uses_first_positions_of_a_longer_record():
    simulator = Simulator(speculative_profile([0.8, 0.5, 0.25, 0.1], 4), TASK)
    config = Configuration("m", 1, drafted("d", 2), 1.0)
    assert simulator.tokens_per_step(config) == pytest.approx(1 + 0.8 + 0.5)


def test_speculation_does_not_change_accuracy():
    simulator = Simulator(speculative_profile([0.5, 0.2], 2), TASK)
    with_draft = simulator.score(Configuration("m", 3, drafted("d", 2), 1.0))
    without = simulator.score(plain(3))
    assert with_draft.accuracy == without.accuracy


def vote(rows, n: int, **kwargs):
    simulator = Simulator(constant_profile(rows), TASK)
    return simulator.score(plain(n), **kwargs)


def test_majority_vote_beats_a_single_sample():
    rows = [[("7", True, 10), ("7", True, 20), ("8", False, 5)]]
    assert vote(rows, 3).accuracy == 1.0
    rows = [[("7", False, 10), ("7", False, 20), ("8", True, 5)]]
    assert vote(rows, 3).accuracy == 0.0


def test_tie_goes_to_the_answer_that_finished_first():
    assert vote([[("a", False, 50), ("b", True, 30)]], 2).accuracy == 1.0
    assert vote([[("a", False, 30), ("b", True, 50)]], 2).accuracy == 0.0


def test_tie_with_equal_lengths_goes_to_the_lower_sample_index():
    assert vote([[("a", True, 40), ("b", False, 40)]], 2).accuracy == 1.0
    assert vote([[("a", False, 40), ("b", True, 40)]], 2).accuracy == 0.0


def test_branches_without_an_answer_do_not_vote():
    assert vote([[(None, False, 10), (None, False, 20), ("x", True, 30)]], 3).accuracy == 1.0
    assert vote([[(None, False, 10), (None, False, 20)]], 2).accuracy == 0.0


def test_exact_subsets_average_over_every_draw():
    # K=4 with one correct sample: N=1 is right in exactly 1 of the 4 possible draws.
    rows = [[("a", True, 10), ("b", False, 20), ("c", False, 30), ("d", False, 40)]]
    result = vote(rows, 1)
    assert result.accuracy == pytest.approx(0.25)
    assert result.subsets == 4


def test_cutoff_drops_late_branches_before_the_vote():
    rows = [[("w", False, 200), ("w", False, 220), ("c", True, 20)]]
    deadline_s = PREFILL_S + 100 * STEP_S
    uncut = vote(rows, 3, objective=LatencyObjective("mean"), deadline_s=deadline_s)
    cut = vote(rows, 3, objective=LatencyObjective("mean", cutoff=True), deadline_s=deadline_s)
    assert uncut.accuracy == 0.0
    assert cut.accuracy == 1.0
    assert uncut.latency_s == pytest.approx(PREFILL_S + 220 * STEP_S)
    assert cut.latency_s == pytest.approx(deadline_s)


def test_cutoff_before_any_branch_finishes_is_wrong():
    rows = [[("c", True, 200), ("c", True, 220)]]
    cut = vote(rows, 2, objective=LatencyObjective(cutoff=True), deadline_s=PREFILL_S)
    assert cut.accuracy == 0.0


def test_accuracy_interval_brackets_the_estimate():
    result = Simulator(family_profile(), TASK).score(Configuration("big", 4, None, 1.0))
    assert result.accuracy_low <= result.accuracy <= result.accuracy_high
    assert result.accuracy_high - result.accuracy_low > 0


def test_context_outside_the_measured_range_is_refused():
    rows = [[("1", True, 5000)]]
    with pytest.raises(OutOfProfiledRange, match=r"context_tokens .* outside the measured "
                                                 r"range 1\.\.1024"):
        vote(rows, 1)


def test_more_branches_than_samples_is_refused():
    with pytest.raises(ProfileIncomplete, match="3 branches need 3 samples"):
        vote([[("a", True, 10), ("b", True, 10)]], 3)


def test_scoring_one_configuration_takes_milliseconds():
    simulator = Simulator(family_profile(questions=100, k=16), TASK)
    config = Configuration("big", 8, drafted("draft", 2), 1.0)
    simulator.score(config)  # fits the cost models once
    start = time.perf_counter()
    for _ in range(10):
        simulator.score(config)
    assert (time.perf_counter() - start) / 10 < 0.05

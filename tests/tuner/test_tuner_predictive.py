"""Per-question vote accuracy and the predictive interval of a finite validation run."""

import numpy as np
import pytest
from tuner_synthetic import constant_profile, drafted, family_profile

from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.simulator import Simulator, predictive_interval


def test_per_question_accuracy_averages_to_the_scored_accuracy():
    simulator = Simulator(family_profile(questions=20, k=8), "arithmetic")
    config = Configuration("big", 3, None, 1.0)
    per_question = simulator.per_question_accuracy(config)
    assert per_question.shape == (20,)
    assert per_question.mean() == pytest.approx(simulator.score(config).accuracy)


def test_per_question_accuracy_with_a_cutoff_matches_the_cutoff_score():
    rows = [[("1", True, 10), ("2", False, 500)]] * 3
    simulator = Simulator(constant_profile(rows, step_s=0.01, prefill_s=0.1), "arithmetic")
    config = Configuration("m", 2, None, 1.0)
    deadline_s = 1.0  # the 10-token branch finishes (0.2 s), the 500-token one does not
    cut = simulator.score(config, LatencyObjective(cutoff=True), deadline_s)
    per_question = simulator.per_question_accuracy(config, deadline_s)
    assert per_question.tolist() == [1.0, 1.0, 1.0] and cut.accuracy == 1.0


def test_predictive_interval_widens_with_fewer_questions_and_holds_certain_votes():
    per_question = np.array([1.0, 0.0] * 50)
    low_10, high_10 = predictive_interval(per_question, 10)
    low_400, high_400 = predictive_interval(per_question, 400)
    assert high_10 - low_10 > high_400 - low_400
    assert low_400 < 0.5 < high_400
    assert predictive_interval(np.ones(30), 25) == (1.0, 1.0)


def test_predictive_interval_covers_new_runs_about_95_percent_of_the_time():
    # A population of question difficulties; each repetition profiles 200 questions with 16
    # samples, then "validates" on 100 new questions: the interval should cover the
    # validation's accuracy at about its nominal 95% (measured 95-96% over 3 x 400 runs).
    rng = np.random.default_rng(7)
    repetitions, covered = 300, 0
    for repetition in range(repetitions):
        profiled = rng.beta(2.0, 1.0, size=200)
        per_question = rng.binomial(16, profiled) / 16
        new_questions = rng.beta(2.0, 1.0, size=100)
        measured = (rng.random(100) < new_questions).mean()
        low, high = predictive_interval(per_question, 100, seed=repetition)
        covered += low <= measured <= high
    assert 0.92 <= covered / repetitions <= 0.985


def _spec_profile(rates):
    from tuner_synthetic import acceptance, cost_grid, profile, samples

    rows = [[("1", True, 40)] * 8] * 4
    costs = (cost_grid("m", lambda b, c: 0.01) + cost_grid("m", lambda b, p: 0.1,
                                                            phase="prefill")
             + cost_grid("m", lambda b, c: 0.01, draft="d", gamma=len(rates))
             + cost_grid("m", lambda b, p: 0.1, phase="prefill", draft="d",
                         gamma=len(rates)))
    return profile(costs=costs, accuracy=samples("m", rows),
                   acceptance_records=[acceptance("m", "d", len(rates), rates)],
                   models=["m", "d"])


def test_acceptance_variance_from_per_position_rates():
    simulator = Simulator(_spec_profile([0.5, 0.25]), "arithmetic")
    config = Configuration("m", 1, drafted("d", 2), 1.0)
    # A in {0, 1, 2} with P = 0.5, 0.25, 0.25: E[A] = 0.75, E[A^2] = 1.25
    assert simulator.tokens_per_step_variance(config) == pytest.approx(1.25 - 0.75**2)
    assert simulator.tokens_per_step_variance(Configuration("m", 1, None, 1.0)) == 0.0
    certain = Simulator(_spec_profile([1.0, 1.0]), "arithmetic")
    assert certain.tokens_per_step_variance(config) == pytest.approx(0.0)


def test_slowest_of_many_branches_makes_speculation_slower_than_its_mean():
    config = Configuration("m", 8, drafted("d", 2), 1.0)
    noisy = Simulator(_spec_profile([0.5, 0.25]), "arithmetic").score(config)
    mean_only = Simulator(_spec_profile([0.5, 0.25]), "arithmetic",
                          acceptance_noise=False).score(config)
    # 40 tokens at 1.75 tokens per step: 22.9 steps of 10 ms plus 100 ms prefill
    assert mean_only.mean_latency_s == pytest.approx(0.1 + 40 / 1.75 * 0.01)
    assert noisy.mean_latency_s > mean_only.mean_latency_s
    single = Simulator(_spec_profile([0.5, 0.25]), "arithmetic").score(
        Configuration("m", 1, drafted("d", 2), 1.0))
    assert abs(single.mean_latency_s - mean_only.mean_latency_s) < 0.01

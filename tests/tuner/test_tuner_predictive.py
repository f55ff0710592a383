"""Per-question vote accuracy and the predictive interval of a finite validation run."""

import numpy as np
import pytest
from tuner_synthetic import constant_profile, family_profile

from tuner.simulator import Configuration, LatencyObjective, Simulator, predictive_interval


def test_per_question_accuracy_averages_to_the_scored_accuracy():
    simulator = Simulator(family_profile(questions=20, k=8), "arithmetic")
    config = Configuration("big", 3, None, 0, 1.0)
    per_question = simulator.per_question_accuracy(config)
    assert per_question.shape == (20,)
    assert per_question.mean() == pytest.approx(simulator.score(config).accuracy)


def test_per_question_accuracy_with_a_cutoff_matches_the_cutoff_score():
    rows = [[("1", True, 10), ("2", False, 500)]] * 3
    simulator = Simulator(constant_profile(rows, step_s=0.01, prefill_s=0.1), "arithmetic")
    config = Configuration("m", 2, None, 0, 1.0)
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

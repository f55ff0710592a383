"""Vote rules: the scalar form (executor, gateway) and the vectorised form (simulator) give
the same verdict on random branches (a new rule registered anywhere is checked here too;
tests/tuner/test_extension_axes.py registers one)."""

from __future__ import annotations

import numpy as np
import pytest

from profilers.voting import (
    MAJORITY,
    VOTE_RULES,
    Ballot,
    Verdict,
    finishing_order,
    vote_rule,
)
from storage import UserInputError

DRAWS = 4000


def random_branches(rng: np.random.Generator, n: int):
    """Answer codes in finishing order (-1: no answer), and which branches finished."""
    answers = rng.integers(1, 5)
    codes = rng.integers(-1, answers, size=n)
    finished = rng.random(n) < rng.uniform(0.3, 1.0)
    return codes, finished


def ballots_of(codes: np.ndarray, finished: np.ndarray) -> list[Ballot]:
    # Position = finishing order: tokens grow with position, so `finishing_order` keeps it.
    return [Ballot(None if code < 0 else f"a{code}", tokens=10 * position + 5, index=position)
            for position, (code, done) in enumerate(zip(codes, finished, strict=True)) if done]


def scalar_code(verdict: Verdict) -> int:
    return -1 if verdict.answer is None else int(verdict.answer[1:])


@pytest.mark.parametrize("rule_key", sorted(VOTE_RULES))
def test_scalar_and_vectorised_forms_agree_on_random_branches(rule_key):
    rule = vote_rule(rule_key)
    rng = np.random.default_rng(0)
    for _ in range(DRAWS // 4):
        n = int(rng.integers(1, 9))
        draws = [random_branches(rng, n) for _ in range(4)]
        codes = np.stack([c for c, _ in draws])
        finished = np.stack([f for _, f in draws])
        replay = rule.replay(codes, finished)
        for row, (code_row, done_row) in enumerate(draws):
            verdict = rule.decide(ballots_of(code_row, done_row), n)
            assert scalar_code(verdict) == replay.winner[row], (code_row, done_row)


def test_all_finished_is_the_same_as_no_mask():
    rng = np.random.default_rng(1)
    codes = rng.integers(-1, 3, size=(50, 6))
    assert np.array_equal(MAJORITY.replay(codes).winner,
                          MAJORITY.replay(codes, np.ones_like(codes, bool)).winner)


def test_majority_ties_go_to_the_answer_that_finished_first():
    ballots = [Ballot("3", 30, 0), Ballot("5", 12, 1), Ballot("3", 40, 2), Ballot("5", 50, 3)]
    assert MAJORITY.decide(ballots, 4) == Verdict("5", final=True)
    assert [b.index for b in finishing_order(ballots)] == [1, 0, 2, 3]


def test_majority_waits_for_every_branch():
    assert not MAJORITY.decide([Ballot("1", 5, 0)], 3).final
    replay = MAJORITY.replay(np.array([[0, 0, 1]]), np.array([[True, True, False]]))
    assert replay.used.tolist() == [2]


def test_unknown_rules_and_parameters_are_user_errors():
    with pytest.raises(UserInputError, match="unknown vote rule 'plurality'; known: majority"):
        vote_rule("plurality")
    with pytest.raises(UserInputError, match="has no parameter 'k'"):
        vote_rule("majority(k=3)")

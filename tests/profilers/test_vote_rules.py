"""Vote rules: the scalar form (executor, gateway) and the vectorised form (simulator) give
the same verdict and wait for the same ballots on random branches (a new rule registered
anywhere is checked here too; tests/tuner/test_extension_axes.py registers one)."""

from __future__ import annotations

import numpy as np
import pytest

from profilers.voting import (
    MAJORITY,
    VOTE_RULES,
    Ballot,
    Verdict,
    beta_majority_probability,
    finishing_order,
    vote_rule,
)
from storage import UserInputError

DRAWS = 2000


# Every registered rule with its default parameters, plus other parameters worth checking.
RULE_KEYS = sorted({*VOTE_RULES, "window(k=2)", "adaptive(threshold=0.8)", "first-m(m=3)",
                    "filtered(keep=0.3)", "filtered(keep=1)"})


def random_branches(rng: np.random.Generator, n: int, all_finish: bool):
    """Answer codes in finishing order (-1: no answer), which branches finished, and mean
    log-probabilities (a few repeated, so confidence ties occur)."""
    answers = rng.integers(1, 5)
    codes = rng.integers(-1, answers, size=n)
    finished = (np.ones(n, bool) if all_finish
                else rng.random(n) < rng.uniform(0.3, 1.0))
    logprobs = rng.choice([-0.5, -0.1, *rng.uniform(-2.0, 0.0, size=3)], size=n)
    return codes, finished, logprobs


def ballots_of(codes, finished, logprobs) -> list[Ballot]:
    # Position = finishing order: tokens grow with position, so `finishing_order` keeps it.
    return [Ballot(None if code < 0 else f"a{code}", tokens=10 * position + 5, index=position,
                   mean_logprob=float(logprob))
            for position, (code, done, logprob) in enumerate(zip(codes, finished, logprobs,
                                                                 strict=True)) if done]


def scalar_code(verdict: Verdict) -> int:
    return -1 if verdict.answer is None else int(verdict.answer[1:])


def scalar_used(rule, ballots: list[Ballot], n: int) -> int:
    """As the executor asks: after each ballot (finishing order) until the verdict is final;
    the position of that ballot + 1, or n when never final."""
    for count, ballot in enumerate(ballots, start=1):
        if rule.decide(ballots[:count], n).final:
            return ballot.index + 1
    return n


@pytest.mark.parametrize("all_finish", [True, False], ids=["all-finish", "deadline"])
@pytest.mark.parametrize("rule_key", RULE_KEYS)
def test_scalar_and_vectorised_forms_agree_on_random_branches(rule_key, all_finish):
    rule = vote_rule(rule_key)
    rng = np.random.default_rng(0)
    for n in range(1, 9):
        draws = [random_branches(rng, n, all_finish) for _ in range(DRAWS // 8)]
        codes, finished, logprobs = (np.stack(parts) for parts in zip(*draws, strict=True))
        replay = rule.replay(codes, None if all_finish else finished, logprobs)
        for row, branches in enumerate(draws):
            ballots = ballots_of(*branches)
            verdict = rule.decide(ballots, n)
            assert scalar_code(verdict) == replay.winner[row], branches
            assert scalar_used(rule, ballots, n) == replay.used[row], branches


@pytest.mark.parametrize("rule_key", RULE_KEYS)
def test_the_verdict_does_not_depend_on_how_ballots_arrive(rule_key):
    # The executor may see several branches finish in one engine step.
    rule = vote_rule(rule_key)
    rng = np.random.default_rng(2)
    for _ in range(300):
        n = int(rng.integers(2, 9))
        ballots = ballots_of(*random_branches(rng, n, True))
        one_by_one = next(rule.decide(ballots[:c], n) for c in range(1, n + 1)
                          if rule.decide(ballots[:c], n).final)
        assert one_by_one == rule.decide(ballots, n)


def test_early_majority_gives_the_full_vote_answer_with_fewer_ballots():
    rng = np.random.default_rng(3)
    codes = rng.integers(-1, 3, size=(5000, 9))
    early, full = vote_rule("early-majority").replay(codes), MAJORITY.replay(codes)
    assert np.array_equal(early.winner, full.winner)
    assert early.used.mean() < 0.9 * full.used.mean()
    # 5 of 9 agree: no other answer can catch up
    assert vote_rule("early-majority").replay(np.array([[1, 1, 1, 1, 1, 0, 0, 0, 0]])
                                              ).used.tolist() == [5]


def test_stopping_rules_wait_for_what_they_say():
    codes = np.array([[2, 2, 0, 2, 1, 1]])
    assert vote_rule("window(k=2)").replay(codes).used.tolist() == [2]
    assert vote_rule("window(k=3)").replay(codes).used.tolist() == [6]  # no agreement
    assert vote_rule("first-m(m=3)").replay(codes).used.tolist() == [3]
    unanimous = np.array([[4, 4, 4, 4, 4, 4, 4, 4]])
    # P(Beta(v+1, 1) > 1/2) = 1 - 2^-(v+1): above 0.95 from 4 agreeing ballots on
    assert beta_majority_probability(4, 0) == 1 - 2 ** -5
    assert vote_rule("adaptive").replay(unanimous).used.tolist() == [4]


def test_confidence_rules_follow_the_log_probabilities():
    codes = np.array([[0, 1, 1]])
    confident_first = np.array([[-0.01, -2.0, -2.0]])
    assert vote_rule("weighted").replay(codes, None, confident_first).winner.tolist() == [0]
    assert MAJORITY.replay(codes).winner.tolist() == [1]
    assert vote_rule("filtered(keep=0.3)").replay(codes, None, confident_first
                                                  ).winner.tolist() == [0]
    with pytest.raises(ValueError, match="log-probabilities"):
        vote_rule("weighted").replay(codes)


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
    assert replay.used.tolist() == [3]  # never final: it waits for the deadline


def test_unknown_rules_and_parameters_are_user_errors():
    with pytest.raises(UserInputError, match="unknown vote rule 'plurality'; known: adaptive"):
        vote_rule("plurality")
    with pytest.raises(UserInputError, match="has no parameter 'k'"):
        vote_rule("majority(k=3)")
    with pytest.raises(UserInputError, match="k must be at least 2"):
        vote_rule("window(k=1)")

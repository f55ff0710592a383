"""The majority vote and its tie rule (the simulator models the same rule)."""

from profilers.voting import majority_vote


def test_most_frequent_answer_wins():
    assert majority_vote(["3", "5", "5", None], [10, 20, 30, 5]) == "5"


def test_unparsed_branches_do_not_vote():
    assert majority_vote([None, None], [4, 5]) is None
    assert majority_vote([None, "7", None], [4, 50, 5]) == "7"


def test_tie_goes_to_the_answer_that_finished_first():
    assert majority_vote(["3", "5", "3", "5"], [30, 12, 40, 50]) == "5"
    assert majority_vote(["3", "5"], [20, 20]) == "3"  # equal length: lower index

"""The executor on a scripted engine: vote, tie rule, deadline aborts, requests in flight."""

import pytest
from fake_streaming import ScriptedEngine

from profilers import ExecutionPlan, Question, execute
from profilers.engine import question_seed
from profilers.tasks import ArithmeticTask
from storage import UserInputError

TASK = ArithmeticTask()
QUESTIONS = [Question("q0", "1+2", "3"), Question("q1", "5-1", "4")]


def test_majority_of_finished_branches_wins_and_latency_is_measured():
    engine = ScriptedEngine(["1+2=3#3", "1+2=4#4", "1+2=3#3"])
    report = execute(engine, TASK, QUESTIONS[:1], ExecutionPlan(n=3, temperature=0.8,
                                                                max_tokens=32))
    (outcome,) = report.outcomes
    assert outcome.answer == "3" and outcome.correct
    assert outcome.branch_tokens == (7, 7, 7)
    assert outcome.latency_s > 0 and outcome.branches_aborted == 0
    assert engine.submitted[0][1] == "1+2:" and engine.submitted[0][2].n == 3


def test_tie_goes_to_the_branch_that_finished_first():
    engine = ScriptedEngine(["1+2=4#4", "1+2=3;#3"])  # one vote each; "4" is shorter
    report = execute(engine, TASK, QUESTIONS[:1], ExecutionPlan(n=2, temperature=0.8,
                                                                max_tokens=32))
    assert report.outcomes[0].answer == "4"


def test_deadline_aborts_running_branches_and_votes_with_finished_ones():
    engine = ScriptedEngine(["#3", "9" * 400 + "#9", "9" * 400 + "#9"], step_s=0.001)
    plan = ExecutionPlan(n=3, temperature=0.8, max_tokens=512, deadline_s=0.05)
    report = execute(engine, TASK, QUESTIONS[:1], plan)
    outcome = report.outcomes[0]
    assert outcome.answer == "3" and outcome.correct
    assert outcome.branches_aborted == 2
    assert engine.aborted == [engine.submitted[0][0]]
    assert 0.05 <= outcome.latency_s < 0.2


def test_no_finished_branch_means_no_answer():
    engine = ScriptedEngine(["9" * 400], step_s=0.001)
    plan = ExecutionPlan(n=1, temperature=0.8, max_tokens=512, deadline_s=0.02)
    outcome = execute(engine, TASK, QUESTIONS[:1], plan).outcomes[0]
    assert outcome.answer is None and not outcome.correct and outcome.branches_aborted == 1


def test_requests_in_flight_overlap_and_outcomes_keep_question_order():
    engine = ScriptedEngine(["#3"])
    plan = ExecutionPlan(n=1, temperature=0.8, max_tokens=8, in_flight=2)
    report = execute(engine, TASK, QUESTIONS, plan)
    assert [o.question_id for o in report.outcomes] == ["q0", "q1"]
    assert [o.correct for o in report.outcomes] == [True, False]
    assert report.accuracy == 0.5
    low, high = report.accuracy_interval()
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_seeded_plan_gives_each_question_its_own_seed():
    plan = ExecutionPlan(n=2, temperature=0.8, max_tokens=8, sampling_seed=5)
    assert plan.sampling("q0").seed == question_seed(5, "q0")
    assert plan.sampling("q1").seed == question_seed(5, "q1") != plan.sampling("q0").seed
    assert ExecutionPlan(n=2, temperature=0.8, max_tokens=8).sampling("q3").seed is None


def test_bad_plans_are_refused():
    with pytest.raises(UserInputError, match="at least 1"):
        ExecutionPlan(n=0, temperature=0.8, max_tokens=8)
    with pytest.raises(UserInputError, match="deadline must be positive"):
        ExecutionPlan(n=1, temperature=0.8, max_tokens=8, deadline_s=0)


def test_open_loop_submits_on_the_schedule_and_times_from_the_arrival():
    # Two requests 0.1 s apart, each 3 steps of 0.005 s: the second is submitted at its
    # arrival, not before, and both take about 3 steps from their arrival.
    engine = ScriptedEngine(["#3"], step_s=0.005)
    plan = ExecutionPlan(n=1, temperature=0.8, max_tokens=8, in_flight=4,
                         arrivals_s=(0.0, 0.1))
    report = execute(engine, TASK, QUESTIONS, plan)
    assert report.wall_s >= 0.1
    assert all(0.005 <= o.latency_s < 0.08 for o in report.outcomes)


def test_open_loop_needs_one_arrival_per_question():
    plan = ExecutionPlan(n=1, temperature=0.8, max_tokens=8, arrivals_s=(0.0,))
    with pytest.raises(UserInputError, match="one per question"):
        execute(ScriptedEngine(["#3"]), TASK, QUESTIONS, plan)
    with pytest.raises(UserInputError, match="must not decrease"):
        ExecutionPlan(n=1, temperature=0.8, max_tokens=8, arrivals_s=(1.0, 0.5))

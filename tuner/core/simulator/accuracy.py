"""The accuracy axis of the simulator: measured samples as the branches of a request.

Per question, subsets of N of the K measured samples play the N branches (all subsets
when there are at most `subsets`, otherwise a fixed-seed sample shared by every
configuration); the configuration's vote rule (`profilers.voting`, the executor's own
code, vectorised) turns them into one answer and says how many branches it waited for.
A token budget B below the profiled one is replayed from the same samples: a sample longer
than B is cut at B tokens and has no answer (as the executor treats a branch the budget
cut). Accuracy intervals are 95% percentile bootstraps over questions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations
from math import comb

import numpy as np

from profilers.voting import Replay, VoteRule, ballot_answer
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
    mean_logprobs: np.ndarray  # [questions, K]; NaN where not recorded

    @property
    def samples_per_question(self) -> int:
        return self.generated_tokens.shape[1]

    @property
    def has_logprobs(self) -> bool:
        return not np.isnan(self.mean_logprobs).any()

    def with_budget(self, max_tokens: int) -> AccuracyTable:
        """The samples as a budget of `max_tokens` would have produced them: longer ones cut
        there, without an answer. ProfileIncomplete above the profiled budget."""
        if max_tokens > self.max_tokens:
            raise ProfileIncomplete(f"a budget of {max_tokens} tokens is above the profiled "
                                    f"{self.max_tokens}; profile accuracy with --max-tokens "
                                    f"{max_tokens}")
        cut = self.generated_tokens > max_tokens
        return replace(self, generated_tokens=np.minimum(self.generated_tokens, max_tokens),
                       answer_codes=np.where(cut, -1, self.answer_codes),
                       max_tokens=max_tokens)


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
            answer = ballot_answer(sample.answer, sample.finish_reason)
            if answer is None:
                continue
            if answer not in known:
                known[answer] = len(known)
                correct_by_code[q].append(sample.correct)
            codes[q, index] = known[answer]
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
        mean_logprobs=np.array([[np.nan if s.mean_logprob is None else s.mean_logprob
                                 for s in r] for r in rows], dtype=float),
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
    mean_logprobs: np.ndarray | None = None  # [Q, S, N]

    @classmethod
    def create(cls, table: AccuracyTable, indices: np.ndarray) -> Draw:
        def pick(values: np.ndarray) -> np.ndarray:
            return np.take_along_axis(values[:, None, :], indices, axis=2)

        return cls.of_lengths(table.prompt_tokens, pick(table.generated_tokens),
                              pick(table.answer_codes), pick(table.mean_logprobs))

    @classmethod
    def of_lengths(cls, prompt_tokens: np.ndarray, lengths: np.ndarray,
                   codes: np.ndarray | None = None,
                   mean_logprobs: np.ndarray | None = None) -> Draw:
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
            mean_logprobs=mean_logprobs,
        )

    def replay(self, rule: VoteRule, finished: np.ndarray | None) -> Replay:
        """The rule's verdicts [Q, S]: winning code and branches waited for."""
        return rule.replay(self.codes, finished,
                           self.mean_logprobs if rule.needs_logprobs else None)


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


def vote_correct(winner: np.ndarray, code_correct: np.ndarray) -> np.ndarray:
    """Whether each (question, subset)'s winning code [Q, S] is a correct answer."""
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

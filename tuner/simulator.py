"""Score a test-time-scaling configuration from measured profiles (DESIGN.md, "The simulator").

Per question, subsets of N of the K measured samples play the N branches. Branches decode
together; as they finish the batch shrinks:

    latency = prefill(N, prompt) + sum_i (L(i) - L(i-1)) / E(gamma) * step(B_i, ctx_i)

with L sorted lengths, B_i = N - i + 1 live branches, ctx_i = prompt + (L(i-1) + L(i)) / 2
(the context in the middle of the segment) and E(gamma) = 1 + sum_{k<gamma} P(first k+1
drafts accepted). Speculative decoding is lossless: lengths and answers do not depend on
the draft. With a draft, accepted tokens vary step to step, so each branch's step count is
drawn (fixed seed) around L / E(gamma) with the variance the per-position acceptance counts
imply, and segments are cut where branches finish in steps: the slowest of N branches sets
the latency (`acceptance_noise=False` restores the mean-only formula above).

Vote (the executor implements the same rule): the answer most branches gave wins; only
branches that finished and have a parsed answer vote. Ties go to the answer whose earliest
branch finished first: fewest generated tokens, then lowest sample index. No voting branch
means a wrong answer. With `cutoff`, branches finishing after the deadline are dropped
before the vote and the latency is capped at the deadline.

Accuracy interval: 95% percentile bootstrap over questions (1000 resamples, fixed seed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

from storage.records import AcceptanceRecord, AccuracySample, ProfileSet
from tuner.cost_model import (
    CostKey,
    ProfileIncomplete,
    StepCostModel,
    cost_points_by_key,
    fit_cost_model,
)

logger = logging.getLogger(__name__)

DEFAULT_SUBSETS = 64
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Configuration:
    """One point of the search space; `gamma` is 0 exactly when `draft` is None."""

    model: str
    branches: int
    draft: str | None
    gamma: int
    temperature: float

    def label(self) -> str:
        speculation = f" + {self.draft} gamma={self.gamma}" if self.draft else ""
        return f"{self.model} N={self.branches}{speculation} T={self.temperature:g}"

    def sort_key(self) -> tuple:
        """A deterministic order for breaking exact ties."""
        return (self.model, self.branches, self.draft or "", self.gamma, self.temperature)


@dataclass(frozen=True)
class LatencyObjective:
    """How latency is summarised: a quantile over (question, subset) latencies or the mean."""

    statistic: str = "quantile"
    quantile: float = 0.9
    cutoff: bool = False

    def tag(self) -> str:
        shape = f"q{self.quantile:g}" if self.statistic == "quantile" else "mean"
        return f"{shape}-cutoff" if self.cutoff else shape

    def describe(self) -> str:
        if self.statistic == "quantile":
            return f"p{self.quantile * 100:g} latency"
        return "mean latency"


@dataclass(frozen=True)
class SimulationResult:
    """Predicted figures of one configuration (seconds, fractions of questions)."""

    configuration: Configuration
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    latency_s: float
    mean_latency_s: float
    mean_generated_tokens: float
    prefill_s: float
    decode_s: float
    tokens_per_step: float
    questions: int
    subsets: int


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


def tokens_per_step(records: list[AcceptanceRecord], gamma: int) -> float:
    """E(gamma) = 1 + sum_{k<gamma} accepted_per_position[k] / num_drafts (summed records)."""
    num_drafts = sum(record.num_drafts for record in records)
    if gamma == 0:
        return 1.0
    if num_drafts == 0:
        raise ProfileIncomplete("acceptance records hold no drafts; profile acceptance again")
    accepted = np.zeros(gamma)
    for record in records:
        accepted += np.asarray(record.accepted_per_position[:gamma], dtype=float)
    return 1.0 + float(accepted.sum()) / num_drafts


class Simulator:
    """Scores configurations of one task from one ProfileSet (pure, deterministic)."""

    def __init__(
        self,
        profile: ProfileSet,
        task: str,
        *,
        split: str | None = None,
        subsets: int = DEFAULT_SUBSETS,
        seed: int = 0,
        acceptance_noise: bool = True,
    ) -> None:
        self.profile = profile
        self.task = task
        self.subsets = subsets
        self.seed = seed
        self.acceptance_noise = acceptance_noise
        self._samples = [
            s for s in profile.accuracy if s.task == task and (split is None or s.split == split)
        ]
        self._points = cost_points_by_key(profile)
        self._tables: dict[tuple[str, float], AccuracyTable] = {}
        self._costs: dict[CostKey, StepCostModel] = {}
        self._subset_cache: dict[tuple[int, int, int], np.ndarray] = {}
        self._bootstrap_cache: dict[int, np.ndarray] = {}
        self._draw_cache: dict[tuple[str, float, int], _Draw] = {}
        self._vote_cache: dict[tuple[str, float, int], tuple] = {}
        self._tokens_per_step: dict[tuple[str, str, int, float], float] = {}

    def table(self, model: str, temperature: float) -> AccuracyTable:
        """The accuracy table of (model, temperature); ProfileIncomplete if none."""
        key = (model, temperature)
        if key not in self._tables:
            rows = [s for s in self._samples if s.model == model and s.temperature == temperature]
            if not rows:
                raise ProfileIncomplete(
                    f"no accuracy samples of {model} at temperature {temperature:g} on task "
                    f"{self.task!r}; profile accuracy first"
                )
            self._tables[key] = build_accuracy_table(rows)
        return self._tables[key]

    def cost_model(self, model: str, draft: str | None, gamma: int, phase: str):
        """The fitted cost model of a slice; prefill falls back to the plain model's."""
        key = CostKey(model, draft, gamma if draft else 0, phase)
        if key not in self._points and phase == "prefill":
            # The draft's own prefill is small next to the target's; use the plain one.
            key = CostKey(model, None, 0, phase)
        if key not in self._costs:
            if key not in self._points:
                raise ProfileIncomplete(f"no measured {key.label()}; profile it first")
            self._costs[key] = fit_cost_model(key, self._points[key])
        return self._costs[key]

    def tokens_per_step(self, config: Configuration) -> float:
        """E(gamma) for the configuration from the closest matching acceptance records."""
        if config.draft is None or config.gamma == 0:
            return 1.0
        key = (config.model, config.draft, config.gamma, config.temperature)
        if key not in self._tokens_per_step:
            self._tokens_per_step[key] = tokens_per_step(self.acceptance_records(config),
                                                         config.gamma)
        return self._tokens_per_step[key]

    def acceptance_records(self, config: Configuration) -> list[AcceptanceRecord]:
        """Records of (target, draft) with gamma >= config.gamma: same task and temperature
        preferred, then exact gamma, then the smallest larger gamma (its first positions)."""
        candidates = [
            r
            for r in self.profile.acceptance
            if r.target == config.model and r.draft == config.draft and r.gamma >= config.gamma
        ]
        if not candidates:
            raise ProfileIncomplete(
                f"no acceptance profile of {config.model} with draft {config.draft} at "
                f"gamma >= {config.gamma}; profile acceptance first"
            )
        if any(r.task == self.task for r in candidates):
            candidates = [r for r in candidates if r.task == self.task]
        best = min(
            candidates,
            key=lambda r: (abs(r.temperature - config.temperature), r.gamma != config.gamma,
                           r.gamma),
        )
        if best.temperature != config.temperature:
            logger.warning(
                "acceptance of %s/%s measured at temperature %g, used for %g",
                config.model, config.draft, best.temperature, config.temperature,
            )
        return [
            r
            for r in candidates
            if (r.task, r.temperature, r.gamma) == (best.task, best.temperature, best.gamma)
        ]

    def score(
        self,
        config: Configuration,
        objective: LatencyObjective | None = None,
        deadline_s: float | None = None,
    ) -> SimulationResult:
        """Predict accuracy and latency of `config` (see the module docstring)."""
        objective = objective or LatencyObjective()
        if objective.cutoff and deadline_s is None:
            raise ValueError("a cutoff needs a deadline")
        table = self.table(config.model, config.temperature)
        draw = self._draw(config, table)
        prefill_s, decode_finish_s = self._timings(table, config, draw)
        finish_s = prefill_s[:, None, None] + decode_finish_s
        latency_s = finish_s.max(axis=2)
        if objective.cutoff and deadline_s is not None:
            finished = finish_s <= deadline_s
            latency_s = np.minimum(latency_s, deadline_s)
            accuracy = self._accuracy(draw, table, finished)
        else:
            # Without a cutoff every branch votes: the vote is shared by all drafts.
            key = (config.model, config.temperature, config.branches)
            if key not in self._vote_cache:
                self._vote_cache[key] = self._accuracy(draw, table, None)
            accuracy = self._vote_cache[key]
        per_question, low, high = accuracy
        return SimulationResult(
            configuration=config,
            accuracy=float(per_question.mean()),
            accuracy_low=low,
            accuracy_high=high,
            latency_s=_statistic(latency_s, objective),
            mean_latency_s=float(latency_s.mean()),
            mean_generated_tokens=draw.mean_generated_tokens,
            prefill_s=float(prefill_s.mean()),
            decode_s=float(decode_finish_s.max(axis=2).mean()),
            tokens_per_step=self.tokens_per_step(config),
            questions=len(per_question),
            subsets=draw.lengths.shape[1],
        )

    def per_question_accuracy(self, config: Configuration, deadline_s: float | None = None
                              ) -> np.ndarray:
        """P(vote correct) per profiled question over its subsets; `deadline_s` = cutoff."""
        table = self.table(config.model, config.temperature)
        draw = self._draw(config, table)
        finished = None
        if deadline_s is not None:
            prefill_s, decode_finish_s = self._timings(table, config, draw)
            finished = prefill_s[:, None, None] + decode_finish_s <= deadline_s
        return _majority_correct(draw.codes, finished, table.code_correct).mean(axis=1)

    def _timings(self, table: AccuracyTable, config: Configuration, draw: _Draw):
        """Prefill seconds [Q] and each branch's decode finish time [Q, S, N] (draw order)."""
        n = config.branches
        prefill = self.cost_model(config.model, config.draft, config.gamma, "prefill")
        prompt = table.prompt_tokens
        prefill_s = prefill.predict(np.column_stack([np.full_like(prompt, n), prompt]))
        decode = self.cost_model(config.model, config.draft, config.gamma, "decode")
        variance = self.tokens_per_step_variance(config) if self.acceptance_noise else 0.0
        if variance <= 0:
            step_s = decode.predict(draw.step_features).reshape(draw.lengths.shape)
            segment_s = draw.segment_tokens / self.tokens_per_step(config) * step_s
            return prefill_s, np.cumsum(segment_s, axis=2)
        steps = _branch_steps(draw.lengths, self.tokens_per_step(config), variance,
                              config.gamma, self.seed)
        return prefill_s, _finish_by_steps(steps, table.prompt_tokens,
                                           self.tokens_per_step(config), decode)

    def tokens_per_step_variance(self, config: Configuration) -> float:
        """Variance of tokens a branch gains per verification step (0 without a draft).

        With p_k = P(first k drafts accepted), accepted A has P(A >= k) = p_k, so
        E[A] = sum p_k and E[A^2] = sum (2k - 1) p_k.
        """
        if config.draft is None or config.gamma == 0:
            return 0.0
        records = self.acceptance_records(config)
        drafts = sum(record.num_drafts for record in records)
        rates = np.zeros(config.gamma)
        for record in records:
            rates += np.asarray(record.accepted_per_position[: config.gamma], dtype=float)
        rates /= max(drafts, 1)
        k = np.arange(1, config.gamma + 1)
        return float(max(0.0, ((2 * k - 1) * rates).sum() - rates.sum() ** 2))

    def _draw(self, config: Configuration, table: AccuracyTable) -> _Draw:
        key = (config.model, config.temperature, config.branches)
        if key not in self._draw_cache:
            indices = self._ordered_subsets(table, config.branches)
            self._draw_cache[key] = _Draw.create(table, indices)
        return self._draw_cache[key]

    def _accuracy(self, draw: _Draw, table: AccuracyTable, finished: np.ndarray | None):
        correct = _majority_correct(draw.codes, finished, table.code_correct)
        per_question = correct.mean(axis=1)
        return (per_question, *self._interval(per_question))

    def _ordered_subsets(self, table: AccuracyTable, n: int) -> np.ndarray:
        """Sample indices [Q, S, N] of each subset, in finishing order (tokens, index)."""
        q, k = table.generated_tokens.shape
        if n > k:
            raise ProfileIncomplete(f"{n} branches need {n} samples per question; profile has {k}")
        key = (q, k, n)
        if key not in self._subset_cache:
            self._subset_cache[key] = self._subsets(q, k, n)
        indices = self._subset_cache[key]
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

    def _interval(self, per_question: np.ndarray) -> tuple[float, float]:
        q = len(per_question)
        if q not in self._bootstrap_cache:
            rng = np.random.default_rng([self.seed, q])
            self._bootstrap_cache[q] = rng.integers(0, q, size=(BOOTSTRAP_RESAMPLES, q))
        means = per_question[self._bootstrap_cache[q]].mean(axis=1)
        low, high = np.quantile(means, [0.025, 0.975])
        return float(low), float(high)


@dataclass(frozen=True)
class _Draw:
    """The branches of every (question, subset) of one (model, temperature, N), in
    finishing order: what all drafts and deadlines share."""

    lengths: np.ndarray  # [Q, S, N] generated tokens, ascending
    codes: np.ndarray  # [Q, S, N] answer codes
    segment_tokens: np.ndarray  # [Q, S, N] L(i) - L(i-1)
    step_features: np.ndarray  # [Q*S*N, 2] (live branches, mid-segment context)
    mean_generated_tokens: float

    @classmethod
    def create(cls, table: AccuracyTable, indices: np.ndarray) -> _Draw:
        lengths = np.take_along_axis(table.generated_tokens[:, None, :], indices, axis=2)
        codes = np.take_along_axis(table.answer_codes[:, None, :], indices, axis=2)
        previous = np.concatenate([np.zeros_like(lengths[..., :1]), lengths[..., :-1]], axis=2)
        context = table.prompt_tokens[:, None, None] + (previous + lengths) / 2
        n = lengths.shape[2]
        live = np.broadcast_to(n - np.arange(n, dtype=float), lengths.shape)
        return cls(
            lengths=lengths, codes=codes, segment_tokens=lengths - previous,
            step_features=np.column_stack([live.ravel(), context.ravel()]),
            mean_generated_tokens=float(lengths.sum(axis=2).mean()),
        )


def _majority_correct(codes: np.ndarray, finished: np.ndarray | None,
                      code_correct: np.ndarray) -> np.ndarray:
    """Whether the vote of each (question, subset) is correct; codes are in finishing order.

    `finished` None means every branch finished."""
    n = codes.shape[2]
    answers = np.arange(code_correct.shape[1])
    voting = codes >= 0 if finished is None else finished & (codes >= 0)
    votes = (codes[..., None] == answers) & voting[..., None]  # [Q,S,N,A]
    counts = votes.sum(axis=2)
    first_position = np.where(votes.any(axis=2), votes.argmax(axis=2), n)
    # More votes wins; among equal counts the answer seen first in finishing order wins.
    ranking = counts * (n + 1) - first_position
    winner = ranking.argmax(axis=2)
    has_vote = counts.max(axis=2) > 0
    winner_correct = np.take_along_axis(code_correct[:, None, :], winner[..., None], axis=2)
    return has_vote & winner_correct[..., 0]


def _branch_steps(lengths: np.ndarray, mean: float, variance: float, gamma: int,
                  seed: int) -> np.ndarray:
    """Verification steps each branch needs for its tokens [Q, S, N].

    Accepted drafts vary step to step, so the step count to L tokens is random: by the
    renewal central limit theorem about Normal(L / mean, L * variance / mean^3), drawn with
    a fixed seed and clipped to what gamma allows. The slowest of N branches sets the
    latency, so this variance raises latency with N (E[max] > max E).
    """
    rng = np.random.default_rng([seed, *lengths.shape, gamma])
    noise = rng.standard_normal(lengths.shape)
    steps = lengths / mean + noise * np.sqrt(lengths * variance / mean**3)
    return np.clip(np.rint(steps), np.ceil(lengths / (gamma + 1)), np.maximum(lengths, 1))


def _finish_by_steps(steps: np.ndarray, prompt_tokens: np.ndarray, mean: float,
                     decode) -> np.ndarray:
    """Decode finish time of every branch [Q, S, N], in the order of `steps`' last axis."""
    order = np.argsort(steps, axis=2, kind="stable")
    ordered = np.take_along_axis(steps, order, axis=2)
    previous = np.concatenate([np.zeros_like(ordered[..., :1]), ordered[..., :-1]], axis=2)
    n = steps.shape[2]
    live = np.broadcast_to(n - np.arange(n, dtype=float), steps.shape)
    context = prompt_tokens[:, None, None] + mean * (previous + ordered) / 2
    step_s = decode.predict(np.column_stack([live.ravel(), context.ravel()])
                            ).reshape(steps.shape)
    finish = np.cumsum((ordered - previous) * step_s, axis=2)
    result = np.empty_like(finish)
    np.put_along_axis(result, order, finish, axis=2)
    return result


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


def _statistic(latency_s: np.ndarray, objective: LatencyObjective) -> float:
    if objective.statistic == "mean":
        return float(latency_s.mean())
    return float(np.quantile(latency_s, objective.quantile))

"""Score a test-time-scaling configuration from measured profiles (docs/design.md,
"The simulator").

Per question, subsets of N of the K measured samples play the N branches (`accuracy`);
branches decode together and the batch shrinks as they finish (`timing`); a speculation
changes how many steps a branch needs, not what it says (`speculation`):

    latency = prefill(N, prompt) + sum_i (L(i) - L(i-1)) / E(gamma) * step(B_i, ctx_i)

With a speculation, accepted tokens vary step to step, so each branch's step count is drawn
(fixed seed) around L / E(gamma) with the variance the per-position acceptance counts
imply, and the slowest of N branches sets the latency (`acceptance_noise=False` restores
the mean-only formula). The configuration's vote rule (`profilers.voting`) turns the
finished branches into one answer; a rule that stops early (`Replay.used` < N) answers
when the last branch it waited for (in finishing order) finishes, as the executor does
when it aborts the rest. With `cutoff`, branches finishing after the deadline are dropped
before the vote and the latency is capped at the deadline. A token budget below the
profiled one replays the samples cut at the budget (`AccuracyTable.with_budget`).

Latencies are computed with the profiled machine's step costs times this machine's
correction for the slice (`tuner.core.calibration`), and each statistic comes with the
bound it stays under at the objective's confidence (`tuner.core.margin`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from storage import ProfileSet, Speculation
from tuner.core.calibration import DRIFT_SD, Corrections, SliceCorrection
from tuner.core.configuration import Configuration, Figures, LatencyObjective
from tuner.core.cost_model import (
    CostKey,
    ProfileIncomplete,
    StepCostModel,
    cost_points_by_key,
    fit_cost_model,
)
from tuner.core.margin import MARGIN_QUESTIONS, Uncertainty
from tuner.core.simulator.accuracy import (
    AccuracyTable,
    Bootstrap,
    Draw,
    SubsetSampler,
    build_accuracy_table,
    predictive_interval,
    vote_correct,
)
from tuner.core.simulator.speculation import (
    branch_steps,
    matching_records,
    tokens_per_step,
    tokens_per_step_variance,
)
from tuner.core.simulator.timing import (
    finish_by_steps,
    finish_by_tokens,
    prefill_seconds,
    stop_seconds,
)

DEFAULT_SUBSETS = 64
SAMPLING_DRAWS = 400
PROFILE_DRAWS = 100
PROFILE_SUBSETS = 8

__all__ = [
    "AccuracyTable",
    "SimulationResult",
    "Simulator",
    "build_accuracy_table",
    "predictive_interval",
    "tokens_per_step",
]


@dataclass(frozen=True, kw_only=True)
class SimulationResult(Figures):
    """The predicted figures of one configuration and what they were computed over."""

    configuration: Configuration
    questions: int
    subsets: int


class Simulator:
    """Scores configurations of one task from one ProfileSet (pure, deterministic)."""

    def __init__(self, profile: ProfileSet, task: str, *, split: str | None = None,
                 subsets: int = DEFAULT_SUBSETS, seed: int = 0,
                 acceptance_noise: bool = True, corrections: Corrections | None = None,
                 margin_questions: int = MARGIN_QUESTIONS) -> None:
        self.profile = profile
        self.task = task
        self.seed = seed
        self.acceptance_noise = acceptance_noise
        self.corrections = corrections or Corrections(())
        self.margin_questions = margin_questions
        self._samples = [
            s for s in profile.accuracy if s.task == task and (split is None or s.split == split)
        ]
        self._points = cost_points_by_key(profile)
        self._subsets = SubsetSampler(subsets, seed)
        self._bootstrap = Bootstrap(seed)
        self._tables: dict[tuple[str, float, int | None], AccuracyTable] = {}
        self._costs: dict[CostKey, StepCostModel] = {}
        self._draws: dict[tuple[str, float, int, int | None], Draw] = {}
        self._votes: dict[tuple, tuple] = {}
        self._acceptance: dict[tuple[str, Speculation, float], list] = {}
        self._sampling: dict[tuple, float] = {}

    @property
    def subsets(self) -> int:
        return self._subsets.subsets

    def table(self, model: str, temperature: float,
              max_tokens: int | None = None) -> AccuracyTable:
        """The accuracy table of (model, temperature) at a token budget (None: the profiled
        one); ProfileIncomplete if none."""
        key = (model, temperature, max_tokens)
        if key not in self._tables and max_tokens is not None:
            self._tables[key] = self.table(model, temperature).with_budget(max_tokens)
        if key not in self._tables:
            rows = [s for s in self._samples if s.model == model and s.temperature == temperature]
            if not rows:
                raise ProfileIncomplete(
                    f"no accuracy samples of {model} at temperature {temperature:g} on task "
                    f"{self.task!r}; profile accuracy first"
                )
            self._tables[key] = build_accuracy_table(rows)
        return self._tables[key]

    def config_table(self, config: Configuration) -> AccuracyTable:
        """The accuracy table a configuration is scored on (its model, temperature, budget)."""
        table = self.table(config.model, config.temperature, config.max_tokens)
        if config.vote.needs_logprobs and not table.has_logprobs:
            raise ProfileIncomplete(
                f"vote rule {config.vote.key()} needs mean log-probabilities, which the "
                f"accuracy profile of {config.model} lacks; profile accuracy again")
        return table

    def cost_model(self, model: str, speculation: Speculation | None,
                   phase: str) -> StepCostModel:
        """The fitted cost model of a slice; prefill falls back to the plain model's."""
        key = CostKey(model, speculation, phase)
        if key not in self._points and phase == "prefill":
            # The draft's own prefill is small next to the target's; use the plain one.
            key = CostKey(model, None, phase)
        if key not in self._costs:
            if key not in self._points:
                raise ProfileIncomplete(f"no measured {key.label()}; profile it first")
            self._costs[key] = fit_cost_model(key, self._points[key])
        return self._costs[key]

    def acceptance_records(self, config: Configuration) -> list:
        """The acceptance records that describe the configuration's speculation."""
        if config.speculation is None:
            return []
        key = (config.model, config.speculation, config.temperature)
        if key not in self._acceptance:
            self._acceptance[key] = matching_records(
                self.profile.acceptance, config.model, config.speculation, self.task,
                config.temperature)
        return self._acceptance[key]

    def tokens_per_step(self, config: Configuration) -> float:
        """E(gamma) of the configuration's speculation (1 without one)."""
        if config.speculation is None:
            return 1.0
        return tokens_per_step(self.acceptance_records(config), config.speculation.gamma)

    def tokens_per_step_variance(self, config: Configuration) -> float:
        """Variance of tokens a branch gains per verification step (0 without one)."""
        if config.speculation is None:
            return 0.0
        return tokens_per_step_variance(self.acceptance_records(config),
                                        config.speculation.gamma)

    def score(self, config: Configuration, objective: LatencyObjective | None = None,
              deadline_s: float | None = None) -> SimulationResult:
        """Predict accuracy and latency of `config` (see the module docstring)."""
        objective = objective or LatencyObjective()
        if objective.cutoff and deadline_s is None:
            raise ValueError("a cutoff needs a deadline")
        table = self.config_table(config)
        draw = self._draw(config, table)
        prefill_s, decode_finish_s = self._timings(table.prompt_tokens, config, draw)
        finish_s = prefill_s[:, None, None] + decode_finish_s
        if objective.cutoff and deadline_s is not None:
            per_question, low, high, used = self._accuracy(config, draw, table,
                                                           finish_s <= deadline_s)
        else:
            # Without a cutoff every branch votes: the vote is shared by all speculations.
            key = (config.model, config.temperature, config.branches, config.vote,
                   config.max_tokens)
            if key not in self._votes:
                self._votes[key] = self._accuracy(config, draw, table, None)
            per_question, low, high, used = self._votes[key]
        decode_s = stop_seconds(decode_finish_s, used)
        latency_s = prefill_s[:, None] + decode_s
        if objective.cutoff and deadline_s is not None:
            latency_s = np.minimum(latency_s, deadline_s)
        statistic_s = objective.of(latency_s)
        upper_s = self.uncertainty(config, latency_s, objective).upper(statistic_s,
                                                                       objective.confidence)
        if objective.cutoff and deadline_s is not None:
            upper_s = min(upper_s, deadline_s)  # the executor answers at the deadline
        return SimulationResult(
            configuration=config,
            accuracy=float(per_question.mean()),
            accuracy_low=low,
            accuracy_high=high,
            latency_s=statistic_s,
            latency_upper_s=upper_s,
            mean_latency_s=float(latency_s.mean()),
            mean_generated_tokens=draw.mean_generated_tokens,
            prefill_s=float(prefill_s.mean()),
            decode_s=float(decode_s.mean()),
            tokens_per_step=self.tokens_per_step(config),
            questions=len(per_question),
            subsets=draw.lengths.shape[1],
        )

    def per_question_accuracy(self, config: Configuration, deadline_s: float | None = None
                              ) -> np.ndarray:
        """P(vote correct) per profiled question over its subsets; `deadline_s` = cutoff."""
        table = self.config_table(config)
        draw = self._draw(config, table)
        finished = None
        if deadline_s is not None:
            prefill_s, decode_finish_s = self._timings(table.prompt_tokens, config, draw)
            finished = prefill_s[:, None, None] + decode_finish_s <= deadline_s
        winner = draw.replay(config.vote, finished).winner
        return vote_correct(winner, table.code_correct).mean(axis=1)

    def correction(self, config: Configuration) -> SliceCorrection:
        """This machine's correction of the configuration's slice (1.0 without checks)."""
        return self.corrections.for_slice(config.model, config.speculation)

    def uncertainty(self, config: Configuration, latency_s: np.ndarray,
                    objective: LatencyObjective) -> Uncertainty:
        """The spread of the statistic of `latency_s` [Q, S] (see tuner.core.margin)."""
        correction = self.correction(config)
        key = (config.model, config.temperature, config.branches, config.vote, objective)
        if key not in self._sampling:
            self._sampling[key] = self.sampling_sd(self._plain_latency(config, latency_s),
                                                   objective)
        if correction.checks:
            correction_sd = correction.log_sd
        else:  # nothing measured here corrects the slice: the cost model's own error
            decode = self.cost_model(config.model, config.speculation, "decode")
            correction_sd = float(np.nan_to_num(decode.loo_relative_error_))
        return Uncertainty(correction_sd=correction_sd,
                           engine_start_sd=self.corrections.engine_start_sd,
                           drift_sd=DRIFT_SD,
                           sampling_sd=self._sampling[key])

    def _plain_latency(self, config: Configuration, latency_s: np.ndarray) -> np.ndarray:
        """Latencies [Q, S] of the configuration without speculation: the sampling spread
        is relative, so every speculation of a branch count shares the plain one's (the
        same number whatever was scored first)."""
        if config.speculation is None:
            return latency_s
        plain = replace(config, speculation=None)
        table = self.table(config.model, config.temperature)
        try:
            prefill_s, decode_finish_s = self._timings(table.prompt_tokens, plain,
                                                       self._draw(plain, table))
        except ProfileIncomplete:
            return latency_s
        return (prefill_s[:, None, None] + decode_finish_s).max(axis=2)

    def sampling_sd(self, latency_s: np.ndarray, objective: LatencyObjective) -> float:
        """Spread of log(measured / predicted statistic): the statistic over
        `margin_questions` new requests (each draw picks that many profiled questions with
        replacement, one subset of each) and the prediction's own estimate from the
        profiled questions (a bootstrap over them)."""
        q, s = latency_s.shape
        rng = np.random.default_rng([self.seed, q, s, self.margin_questions])
        rows = rng.integers(0, q, size=(SAMPLING_DRAWS, self.margin_questions))
        columns = rng.integers(0, s, size=rows.shape)
        measured = _statistics(latency_s[rows, columns], objective)
        # The profile bootstrap keeps a few subsets per question (all would cost 60 ms per
        # configuration); the extra subset noise only widens it a little.
        resampled = rng.integers(0, q, size=(PROFILE_DRAWS, q, 1))
        kept = rng.integers(0, s, size=(PROFILE_DRAWS, q, min(s, PROFILE_SUBSETS)))
        predicted = _statistics(latency_s[resampled, kept].reshape(PROFILE_DRAWS, -1),
                                objective)
        return float(np.hypot(np.std(np.log(measured)), np.std(np.log(predicted))))

    def replay_latency(self, config: Configuration, prompt_tokens, lengths,
                       draws: int = 16) -> np.ndarray:
        """Predicted latency (seconds) of each request [Q] whose N branches generated
        `lengths` [Q, N] tokens after `prompt_tokens` [Q]: the simulator's timing, from the
        profiled step costs without this machine's correction, applied to what a run
        actually produced (its acceptance noise averaged over `draws`)."""
        prompt = np.asarray(prompt_tokens, dtype=float)
        ordered = np.sort(np.asarray(lengths, dtype=float), axis=1)
        repeats = draws if config.speculation is not None and self.acceptance_noise else 1
        draw = Draw.of_lengths(prompt, np.repeat(ordered[:, None, :], repeats, axis=1))
        prefill_s, decode_finish_s = self._timings(prompt, config, draw, corrected=False)
        return prefill_s + decode_finish_s.max(axis=2).mean(axis=1)

    def _timings(self, prompt_tokens: np.ndarray, config: Configuration, draw: Draw,
                 corrected: bool = True):
        """Prefill seconds [Q] and each branch's decode finish time [Q, S, N] (draw order),
        times this machine's correction unless `corrected` is False."""
        speculation = config.speculation
        prefill = self.cost_model(config.model, speculation, "prefill")
        prefill_s = prefill_seconds(prefill, config.branches, prompt_tokens)
        decode = self.cost_model(config.model, speculation, "decode")
        mean = self.tokens_per_step(config)
        variance = self.tokens_per_step_variance(config) if self.acceptance_noise else 0.0
        if speculation is None or variance <= 0:
            finish_s = finish_by_tokens(draw.segment_tokens, draw.step_features, mean, decode)
        else:
            steps = branch_steps(draw.lengths, mean, variance, speculation.gamma, self.seed)
            finish_s = finish_by_steps(steps, prompt_tokens, mean, decode)
        scale = self.correction(config).scale if corrected else 1.0
        if scale == 1.0:
            return prefill_s, finish_s
        return prefill_s * scale, finish_s * scale

    def _draw(self, config: Configuration, table: AccuracyTable) -> Draw:
        key = (config.model, config.temperature, config.branches, config.max_tokens)
        if key not in self._draws:
            self._draws[key] = Draw.create(table, self._subsets.ordered(table, config.branches))
        return self._draws[key]

    def _accuracy(self, config: Configuration, draw: Draw, table: AccuracyTable,
                  finished: np.ndarray | None):
        """Per-question accuracy, its interval and the branches the rule waited for."""
        replay = draw.replay(config.vote, finished)
        per_question = vote_correct(replay.winner, table.code_correct).mean(axis=1)
        return (per_question, *self._bootstrap.interval(per_question), replay.used)


def _statistics(rows: np.ndarray, objective: LatencyObjective) -> np.ndarray:
    """The objective's statistic of each row [draws, values]."""
    if objective.statistic == "mean":
        return rows.mean(axis=1)
    return np.quantile(rows, objective.quantile, axis=1)

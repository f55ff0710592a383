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

import math
from dataclasses import dataclass, replace

import numpy as np

from storage import ProfileSet, Speculation, UserInputError
from tuner.core.calibration import DRIFT_SD, Corrections, SliceCorrection
from tuner.core.configuration import Configuration, Figures, LatencyObjective
from tuner.core.cost_model import (
    CostKey,
    OutOfProfiledRange,
    ProfileIncomplete,
    StepCostModel,
    cost_points_by_key,
    fit_cost_model,
)
from tuner.core.load import Load
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
from tuner.core.simulator.load import LinearCost, LoadReplay, ReplayInput, replay_arrivals
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
LOAD_REQUESTS = 600  # requests an arrival replay runs (the first 10% warm the engine up)

__all__ = [
    "AccuracyTable",
    "LoadReplay",
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
    # Under load: the engine's cap on running branches the prediction holds for, sized to
    # the most the replay ran at once (None: one request owns the engine, max = N).
    max_num_seqs: int | None = None


class Simulator:
    """Scores configurations of one task from one ProfileSet (pure, deterministic)."""

    def __init__(self, profile: ProfileSet, task: str, *, split: str | None = None,
                 subsets: int = DEFAULT_SUBSETS, seed: int = 0,
                 acceptance_noise: bool = True, corrections: Corrections | None = None,
                 margin_questions: int = MARGIN_QUESTIONS, max_num_seqs: int | None = None,
                 load_requests: int = LOAD_REQUESTS) -> None:
        self.profile = profile
        self.task = task
        self.seed = seed
        self.acceptance_noise = acceptance_noise
        self.corrections = corrections or Corrections(())
        self.margin_questions = margin_questions
        self.max_num_seqs = max_num_seqs  # under load; None: the largest profiled batch
        self.load_requests = load_requests
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
        self._sampling: dict[tuple, tuple[float, float]] = {}

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
              deadline_s: float | None = None, load: Load | None = None) -> SimulationResult:
        """Predict accuracy and latency of `config` (see the module docstring); under a
        `load`, latency over requests arriving as it says (`replay_load`)."""
        objective = objective or LatencyObjective()
        if load is not None:
            return self._score_under_load(config, objective, load)
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
        if key not in self._sampling:  # shared by speculations: a spread relative to size
            self._sampling[key] = self._sampling_parts(self._plain_latency(config, latency_s),
                                                       objective)
        if correction.checks:
            correction_sd = correction.log_sd
        else:  # nothing measured here corrects the slice: the cost model's own error
            decode = self.cost_model(config.model, config.speculation, "decode")
            correction_sd = float(np.nan_to_num(decode.loo_relative_error_))
        return Uncertainty(correction_sd=correction_sd,
                           engine_start_sd=self.corrections.engine_start_sd,
                           drift_sd=DRIFT_SD,
                           sampling_sd=float(np.hypot(*self._sampling[key])))

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
        return float(np.hypot(*self._sampling_parts(latency_s, objective)))

    def _sampling_parts(self, latency_s: np.ndarray, objective: LatencyObjective
                        ) -> tuple[float, float]:
        """(spread over `margin_questions` new requests, spread of the profile's own
        estimate) of log statistic, from latencies [Q, S] of requests alone."""
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
        return float(np.std(np.log(measured))), float(np.std(np.log(predicted)))

    def replay_load(self, config: Configuration, load: Load) -> LoadReplay:
        """Requests of `config` arriving as `load` says, replayed on one engine
        (`tuner.core.simulator.load`): each request is a profiled question and subset
        (fixed seed, the same sequence for every configuration), times this machine's
        correction. OutOfProfiledRange, naming the points to measure, when the batch or
        context the load reaches is outside the profile."""
        replay = replay_arrivals(self._load_input(config, load))
        self._check_load_range(config, load, replay)
        return replay

    def _score_under_load(self, config: Configuration, objective: LatencyObjective,
                          load: Load) -> SimulationResult:
        if objective.cutoff:
            raise UserInputError("a hard cutoff under load is not modelled yet; drop "
                                 "--cutoff (or --load)")
        alone = self.score(config, objective)  # accuracy: load changes when, not what
        replay = self.replay_load(config, load)
        latency_s = replay.latency_s
        statistic_s = objective.of(latency_s)
        first_token_s = float(replay.first_token_latency_s.mean())
        return replace(
            alone,
            latency_s=statistic_s,
            latency_upper_s=self._load_uncertainty(config, replay, objective).upper(
                statistic_s, objective.confidence),
            mean_latency_s=float(latency_s.mean()),
            prefill_s=first_token_s,  # under load: time to first token, queueing included
            decode_s=float(latency_s.mean()) - first_token_s,
            max_num_seqs=min(self.load_cap(config),
                             config.branches * math.ceil(replay.peak_branches
                                                         / config.branches)),
        )

    def _load_uncertainty(self, config: Configuration, replay: LoadReplay,
                          objective: LatencyObjective) -> Uncertainty:
        """The unloaded uncertainty, its request sampling taken from the replay: the spread
        of the statistic between runs of `margin_questions` consecutive requests (queueing
        makes neighbours alike, so draws of independent requests would understate it)."""
        # The unloaded score of `config` ran first: its spreads are known.
        key = (config.model, config.temperature, config.branches, config.vote, objective)
        _, profile_sd = self._sampling[key]
        uncertainty = self.uncertainty(config, np.empty((0, 0)), objective)
        latency_s = replay.latency_s
        runs = max(len(latency_s) // self.margin_questions, 1)
        blocks = latency_s[: runs * self.margin_questions].reshape(runs, -1)
        block_sd = float(np.std(np.log([objective.of(block) for block in blocks])))
        return replace(uncertainty, sampling_sd=float(np.hypot(block_sd, profile_sd)))

    def load_cap(self, config: Configuration) -> int:
        """max_num_seqs of the replay: the one asked for, else the largest batch both the
        decode and the prefill profile of the slice measured (never below N)."""
        if self.max_num_seqs is not None:
            return max(self.max_num_seqs, config.branches)
        decode = self.cost_model(config.model, config.speculation, "decode")
        prefill = self.cost_model(config.model, config.speculation, "prefill")
        return max(min(decode.batch_range_[1], prefill.batch_range_[1]), config.branches)

    def replay_requests(self, config: Configuration, arrivals_s, prompt_tokens,
                        lengths) -> LoadReplay:
        """The arrival replay of requests that arrived at `arrivals_s` [R] after prompts of
        `prompt_tokens` [R] and whose N branches generated `lengths` [R, N] tokens (what a
        run under load actually produced), from the profiled step costs without this
        machine's correction: separates the replay's costs and scheduling from how lengths
        are sampled."""
        prompt = np.asarray(prompt_tokens, dtype=float)
        # Branch order as the engine admits children (index order); only step counts
        # are read from the draw, so its lengths need not be sorted.
        draw = Draw.of_lengths(prompt, np.asarray(lengths, dtype=float)[:, None, :])
        steps = self._branch_steps(config, draw)[:, 0, :]
        return replay_arrivals(self._replay_input(config, prompt, steps, 1.0,
                                                  np.asarray(arrivals_s, dtype=float), None))

    def _replay_input(self, config: Configuration, prompt_tokens: np.ndarray,
                      steps: np.ndarray, scale: float, arrivals_s: np.ndarray | None,
                      clients: int | None) -> ReplayInput:
        costs = [LinearCost.of(self.cost_model(config.model, config.speculation, phase)
                               ).scaled(scale) for phase in ("decode", "prefill")]
        return ReplayInput(prompt_tokens=prompt_tokens, steps=steps, decode=costs[0],
                           prefill=costs[1], tokens_per_step=self.tokens_per_step(config),
                           max_num_seqs=self.load_cap(config), arrivals_s=arrivals_s,
                           clients=clients)

    def _load_input(self, config: Configuration, load: Load) -> ReplayInput:
        table = self.table(config.model, config.temperature)
        draw = self._draw(config, table)
        q, s, n = draw.lengths.shape
        arrivals_s = None if load.clients is not None else load.arrivals_s(
            self.load_requests, self.seed)
        requests = self.load_requests if arrivals_s is None else len(arrivals_s)
        rng = np.random.default_rng([self.seed, requests, q, s])
        question, subset = rng.integers(0, q, size=requests), rng.integers(0, s, size=requests)
        # Which branch the engine admits first has nothing to do with its length.
        order = np.argsort(np.random.default_rng([self.seed, requests, n]).random(
            (requests, n)), axis=1)
        steps = np.take_along_axis(self._branch_steps(config, draw)[question, subset],
                                   order, axis=1)
        return self._replay_input(config, table.prompt_tokens[question], steps,
                                  self.correction(config).scale, arrivals_s, load.clients)

    def _branch_steps(self, config: Configuration, draw: Draw) -> np.ndarray:
        """Decode steps of every branch [Q, S, N]: the drawn step counts with a varying
        acceptance (as `_timings`), else tokens / E(gamma)."""
        mean = self.tokens_per_step(config)
        variance = self.tokens_per_step_variance(config) if self.acceptance_noise else 0.0
        if config.speculation is None or variance <= 0:
            return draw.lengths / mean
        return branch_steps(draw.lengths, mean, variance, config.speculation.gamma, self.seed)

    def _check_load_range(self, config: Configuration, load: Load,
                          replay: LoadReplay) -> None:
        """Refuse a replay that ran the engine outside the profiled batches or contexts,
        saying which decode points to measure."""
        checks = (("decode", replay.peak_branches, replay.peak_context_tokens),
                  ("prefill", replay.peak_prefill_branches, replay.peak_prompt_tokens))
        for phase, batch, tokens in checks:
            model = self.cost_model(config.model, config.speculation, phase)
            try:
                model.check_range(np.array([[max(batch, 1), tokens]]))
            except OutOfProfiledRange as error:
                raise OutOfProfiledRange(
                    f"{config.label()} at {load.key()}: {error}; measure it with "
                    f"{self._profile_command(config, model, batch)}") from None

    def _profile_command(self, config: Configuration, model: StepCostModel,
                         batch: int) -> str:
        """The `profile decode` command that measures what the replay lacked."""
        measured = model.batch_range_[1]
        if batch > measured:
            sizes = [measured * 2]
            while sizes[-1] < batch:
                sizes.append(sizes[-1] * 2)
            points = f"--batch-sizes {','.join(map(str, sizes))}"
        else:
            points = "--prompt-tokens with longer prompts"
        prompts = sorted({p.context_tokens for p in self._points.get(
            CostKey(config.model, config.speculation, "prefill"), [])})
        if prompts and batch > measured:  # the same prompts, so the grid stays a grid
            points += f" --prompt-tokens {','.join(map(str, prompts))}"
        command = f"latts-tune profile decode --model {self._model_path(config.model)} {points}"
        speculation = config.speculation
        if speculation is not None and speculation.draft:
            command += (f" --draft {self._model_path(speculation.draft)} "
                        f"--gamma {speculation.gamma}")
        return command

    def _model_path(self, name: str) -> str:
        record = next((m for m in self.profile.models if m.name == name), None)
        return record.path if record is not None else name

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

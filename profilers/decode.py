"""Decode-cost profiler: seconds per engine step vs live branches and context length.

Each operating point decodes a fixed number of tokens (``ignore_eos``) for `batch_size`
identical greedy requests submitted together, so they share every engine step. The step
time is the engine's own first-to-last-token time divided by the steps taken; with
speculative decoding a step verifies gamma drafts and its count is read from the draft
counters (one draft proposal per live request per step). Prefill time (submission to
first token) is recorded from the same requests.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime

from profilers.engine import Engine, SamplingConfig, SpecCounters, model_name
from profilers.models import register_engine_models
from profilers.progress import ProgressReporter, SilentProgress
from profilers.speculation import method_of
from storage import (
    ClaimStore,
    CostPoint,
    ProfileRecords,
    ProfileStore,
    Speculation,
    UserInputError,
    speculation_columns,
)

logger = logging.getLogger(__name__)

# Token ids 3..18 are ordinary tokens in any vocabulary of at least 19 entries.
_FILLER_IDS = tuple(range(3, 19))


@dataclass(frozen=True)
class DecodeGrid:
    """Operating points to measure; context = prompt + half the decoded tokens."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    prompt_tokens: tuple[int, ...] = (8, 32, 64)
    decode_tokens: int = 32
    repeats: int = 3
    warmup: int = 1
    # "engine": the engine's own first-to-last-token clock, identical requests, greedy.
    # "client": wall clock seen by a client streaming one request of n = batch sampled
    # branches (the executor's shape), which adds the front end's per-step output work.
    clock: str = "engine"
    temperature: float = 0.8  # sampling temperature of the "client" clock

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UserInputError("batch sizes must be at least 1; e.g. --batch-sizes 1,2,4,8")
        if not self.prompt_tokens or min(self.prompt_tokens) < 1:
            raise UserInputError("prompt lengths must be at least 1 token; "
                                 "e.g. --prompt-tokens 8,32")
        if self.decode_tokens < 2:
            raise UserInputError("--decode-tokens must be at least 2 (one step after the first)")
        if self.repeats < 1:
            raise UserInputError("--repeats must be at least 1")
        if self.clock not in ("engine", "client"):
            raise UserInputError(f"clock must be 'engine' or 'client' (got {self.clock!r})")
        if self.clock == "client" and self.temperature <= 0:
            raise UserInputError("the client clock samples n branches: temperature must be > 0")

    def context_tokens(self, prompt_tokens: int) -> int:
        return prompt_tokens + self.decode_tokens // 2


CONTEXT_HEADROOM = 1.1  # validation prompts and answers may run a little past the profiled


def prompt_tokens_covering(shortest_prompt: int, longest_context: int, decode_tokens: int,
                           points: int = 3) -> tuple[int, ...]:
    """Prompt lengths whose measured contexts (prompt + decode_tokens / 2) reach from the
    shortest prompt to past the longest context the accuracy samples replay, so the cost
    model never has to extrapolate for the study (it refuses to)."""
    half = decode_tokens // 2
    low = max(1, shortest_prompt - half)
    high = max(low, math.ceil(longest_context * CONTEXT_HEADROOM) - half)
    return tuple(sorted({round(low + (high - low) * i / (points - 1)) for i in range(points)}))


def _filler_prompt(length: int) -> list[int]:
    return [_FILLER_IDS[index % len(_FILLER_IDS)] for index in range(length)]


def measure_decode_step(engine: Engine, batch_size: int, prompt: list[int],
                        decode_tokens: int, temperature: float = 0.0) -> tuple[float, float]:
    """Decode `batch_size` requests of `prompt` once; return (seconds per decode step,
    seconds to first token). Greedy as the profile measures; with a temperature each
    request samples with its own seed."""
    before = engine.speculative_counters()
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=decode_tokens, ignore_eos=True)
    sampling = greedy if temperature == 0 else [
        dataclasses.replace(greedy, temperature=temperature, seed=index)
        for index in range(batch_size)]
    results = engine.generate([prompt] * batch_size, sampling)
    counters = engine.speculative_counters() - before
    # Requests reach the engine one by one, so their prefills land in different steps and
    # an early request's decode window also holds later requests' prefill steps. The
    # shortest window is the least disturbed: a step with the whole batch decoding.
    decode_s = min((result.decode_s for result in results if result.decode_s), default=0.0)
    generated = results[0].generated_tokens_timed
    steps = decode_steps(engine, counters, generated, batch_size)
    if steps <= 0 or decode_s <= 0:
        raise RuntimeError(f"engine reported no decode steps ({generated} tokens generated)")
    first_token_s = max(result.first_token_s or 0.0 for result in results)
    return decode_s / steps, first_token_s


def _measure_client_clock(engine, batch_size: int, prompt: list[int], decode_tokens: int,
                          temperature: float) -> tuple[float, float]:
    """Stream one request of `batch_size` sampled branches; wall seconds per decode step
    (first to last token) and submission to first token."""
    import time

    before = engine.speculative_counters()
    sampling = SamplingConfig(n=batch_size, temperature=temperature, max_tokens=decode_tokens,
                              ignore_eos=True)
    submitted_s = time.perf_counter()
    engine.submit(f"latts-decode-{submitted_s}", prompt, sampling)
    first_s, finished = None, 0
    while finished < batch_size:
        for delta in engine.step():
            first_s = first_s or time.perf_counter()
            finished += delta.finish_reason is not None
    last_s = time.perf_counter()
    steps = decode_steps(engine, engine.speculative_counters() - before, decode_tokens,
                         batch_size)
    if first_s is None or steps <= 0:
        raise RuntimeError("engine reported no decode steps")
    return (last_s - first_s) / steps, first_s - submitted_s


def decode_steps(engine: Engine, counters: SpecCounters, generated: int,
                 batch_size: int) -> float:
    """Engine steps per request that decoded `generated` tokens (the first from prefill):
    without speculation one per token; with a method that drafts every step, one per draft;
    with a lookup method (steps without a match draft nothing), each step yields one token
    plus those accepted."""
    if engine.speculative is None:
        return generated - 1
    if method_of(engine.speculative.speculation).proposes_every_step:
        return counters.num_drafts / batch_size
    return generated - 1 - counters.num_accepted_tokens / batch_size


def _measure_with(engine: Engine, grid: DecodeGrid, batch_size: int, prompt: list[int]
                  ) -> tuple[float, float]:
    if grid.clock == "client":
        return _measure_client_clock(engine, batch_size, prompt, grid.decode_tokens,
                                     grid.temperature)
    return measure_decode_step(engine, batch_size, prompt, grid.decode_tokens)


def _measure_point(engine: Engine, grid: DecodeGrid, batch_size: int, prompt_tokens: int
                   ) -> tuple[list[float], list[float]]:
    prompt = _filler_prompt(prompt_tokens)
    for _ in range(grid.warmup):
        _measure_with(engine, grid, batch_size, prompt)
    step_samples, prefill_samples = [], []
    for _ in range(grid.repeats):
        step_s, first_token_s = _measure_with(engine, grid, batch_size, prompt)
        step_samples.append(step_s)
        prefill_samples.append(first_token_s)
    return step_samples, prefill_samples


def pending_decode_points(store: ProfileStore, hardware_fingerprint: str, engine_version: str,
                          model: str, speculation: Speculation | None, grid: DecodeGrid
                          ) -> list[tuple[int, int]]:
    """(batch size, prompt tokens) of the grid not yet stored for this configuration."""
    done = store.cost_point_keys(hardware_fingerprint, engine_version, model)
    return [
        (batch, prompt)
        for batch in grid.batch_sizes
        for prompt in grid.prompt_tokens
        if (speculation, "decode", batch, grid.context_tokens(prompt)) not in done
    ]


def profile_decode(
    engine: Engine,
    store: ProfileStore,
    grid: DecodeGrid,
    progress: ProgressReporter | None = None,
    claims: ClaimStore | None = None,
) -> int:
    """Measure every grid point not yet stored for this engine; return how many were measured.

    With `claims`, each point is claimed first, so several workers on one database split
    the grid and none measures a point twice.

    Each point is written as soon as it is measured, so an interrupt loses at most the
    point in progress and a rerun skips what is stored. A point the engine fails on
    (e.g. out of memory) is stored as failed with the reason, and the run goes on.
    """
    progress = progress or SilentProgress()
    hardware, version = engine.hardware(), engine.engine_version()
    store.upsert_hardware(hardware)
    register_engine_models(store, engine)
    model = model_name(engine.model)
    speculation = engine.speculative.speculation if engine.speculative else None
    pending = pending_decode_points(store, hardware.fingerprint, version, model, speculation,
                                    grid)
    progress.start(f"decode cost {model}"
                   + (f" + {speculation.label()}" if speculation else ""), len(pending))
    columns = speculation_columns(speculation)
    slice_name = f"{speculation.source_key}|{speculation.gamma}" if speculation else "none"

    def point(phase: str, batch: int, context: int, samples: list[float], **failure) -> CostPoint:
        return CostPoint(hardware_fingerprint=hardware.fingerprint, engine_version=version,
                         model=model, phase=phase, batch_size=batch, context_tokens=context,
                         seconds_samples=tuple(samples), measured_at=datetime.now(UTC),
                         **columns, **failure)

    measured = 0
    for batch, prompt in pending:
        context = grid.context_tokens(prompt)
        key = f"decode|{hardware.fingerprint}|{version}|{model}|{slice_name}|{batch}|{context}"
        if claims is not None and not claims.claim(key):
            progress.advance()  # another worker measures it
            continue
        measured += 1
        try:
            step_samples, prefill_samples = _measure_point(engine, grid, batch, prompt)
        except (RuntimeError, MemoryError) as error:  # engine-side failure: record, go on
            logger.warning("decode point batch=%d prompt=%d failed: %s", batch, prompt, error)
            store.add_cost_point(point("decode", batch, context, [], status="failed",
                                       failure_reason=str(error)[:500]))
        else:
            # One transaction: a kill never leaves a prefill point without its decode point.
            store.write(ProfileRecords(cost_points=(
                point("prefill", batch, prompt, prefill_samples),
                point("decode", batch, context, step_samples))))
            logger.info("%s B=%d ctx=%d: %.2f ms/step (spread %.2f)", model, batch, context,
                        1e3 * statistics.median(step_samples),
                        1e3 * (max(step_samples) - min(step_samples)))
        progress.advance()
    return measured

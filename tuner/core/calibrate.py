"""`latts-tune calibrate`: latency checks on this machine, slice by slice, within a budget.

Each checked slice (model, speculation) gets one engine and a few requests per branch
count, served as the executor serves them (sampled branches, the profile's temperature);
each request's measured latency is stored beside the latency the simulator replays for
its branch lengths (`storage.LatencyCheck`), so `tuner.core.calibration` can correct the
profiled machine's step costs for this machine. Engine starts dominate the cost (20-30 s
each for the testbed), so slices are checked in order of how much they inform (every
target alone, largest first, then each target with its speculation at a middle draft
length) and unchecked slices borrow from checked ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from profilers import ExecutionPlan, ProgressReporter, SilentProgress
from profilers.engine import SpeculativeConfig, StreamingEngine
from storage import Database, LatencyCheck, Speculation
from tuner.core.calibration import store_check
from tuner.core.configuration import Configuration
from tuner.core.operations import Workspace
from tuner.core.validate import engine_arguments, measure, select_questions

logger = logging.getLogger(__name__)

CALIBRATION_SPLIT = "train"  # neither the profile's questions nor validation's
SAMPLING_SEED = 0
DEFAULT_ENGINE_START_S = 30.0  # until one is measured (benchmarks/results/engine_start.md)
FIRST_CHECK_ESTIMATE_S = 20.0  # one branch count's requests, until one is measured
# model path, speculative config -> a running engine
EngineStarter = Callable[[str, SpeculativeConfig | None], StreamingEngine]


@dataclass(frozen=True)
class CalibrationSlice:
    """One engine's worth of checks: a model, a speculation and the branch counts run."""

    model: str
    speculation: Speculation | None
    branches: tuple[int, ...]

    def label(self) -> str:
        return self.model + (f" + {self.speculation.label()}" if self.speculation else "")


@dataclass(frozen=True)
class SliceResult:
    """What one slice's checks measured; `slice.branches` are the counts checked, which
    the budget may cut short of the plan."""

    slice: CalibrationSlice
    checks: tuple[LatencyCheck, ...]
    engine_start_s: float
    engine_close_s: float
    scale: float  # measured / replayed, geometric mean over the slice's requests
    check_seconds: tuple[float, ...]  # wall time of each branch count's check


@dataclass(frozen=True)
class CalibrationReport:
    results: tuple[SliceResult, ...]
    skipped: tuple[CalibrationSlice, ...]  # not checked within the budget
    elapsed_s: float


def plan_slices(workspace: Workspace) -> list[CalibrationSlice]:
    """Every target alone, largest first, then each with each speculation source at its
    middle profiled draft length; branch counts 1, the middle and the largest searched."""
    entries = sorted(workspace.space.models, key=lambda e: _size(workspace, e.model),
                     reverse=True)
    plain, speculative = [], []
    for entry in entries:
        counts = tuple(sorted({1, (entry.min_branches + entry.max_branches) // 2,
                               entry.max_branches}))
        plain.append(CalibrationSlice(entry.model, None, counts))
        for choice in entry.speculations:
            gamma = choice.gammas[len(choice.gammas) // 2]
            most = choice.max_branches[choice.gammas.index(gamma)]
            spec_counts = tuple(n for n in counts if n <= most) or (1,)
            speculative.append(CalibrationSlice(entry.model, choice.speculation(gamma),
                                                spec_counts))
    return plain + speculative


def _size(workspace: Workspace, model: str) -> int:
    record = next((m for m in workspace.profile.models if m.name == model), None)
    return record.parameter_count if record else 0


def calibrate(workspace: Workspace, db: Database, start_engine: EngineStarter,
              *, budget_s: float, questions: int = 8,
              progress: ProgressReporter | None = None,
              clock: Callable[[], float] = time.perf_counter) -> CalibrationReport:
    """Check slices of `plan_slices` until the next one would not fit in `budget_s`."""
    progress = progress or SilentProgress()
    started_s = clock()
    plan = plan_slices(workspace)
    progress.start(f"calibrating {len(plan)} engine configurations", len(plan))
    results: list[SliceResult] = []
    ends_at_s = started_s + budget_s
    for index, planned in enumerate(plan):
        last = results[-1] if results else None
        start_s, close_s = ((last.engine_start_s, last.engine_close_s) if last
                            else (DEFAULT_ENGINE_START_S, 0.0))
        if clock() + start_s + _check_estimate_s(results) + close_s > ends_at_s:
            return CalibrationReport(tuple(results), tuple(plan[index:]),
                                     clock() - started_s)
        results.append(_check_slice(workspace, db, start_engine, planned, questions, clock,
                                    ends_at_s, close_s))
        progress.advance()
    return CalibrationReport(tuple(results), (), clock() - started_s)


def _check_estimate_s(results: list[SliceResult]) -> float:
    """Seconds of one branch count's check: the slowest so far (a guess before any).
    The slowest, not the last: a speculative slice after a plain one takes longer."""
    measured = [check_s for result in results for check_s in result.check_seconds]
    return max(measured, default=FIRST_CHECK_ESTIMATE_S)


def _check_slice(workspace: Workspace, db: Database, start_engine: EngineStarter,
                 planned: CalibrationSlice, questions: int, clock, ends_at_s: float,
                 close_s: float) -> SliceResult:
    """Check the slice's branch counts in order while the next, and closing the engine
    (`close_s`, as long as last time), fit before `ends_at_s` (the first always runs:
    the engine was started for it)."""
    table_temperature = workspace.space.models[0].temperatures[0]
    config = Configuration(planned.model, planned.branches[0], planned.speculation,
                           table_temperature)
    model_path, speculative = engine_arguments(workspace.profile, config)
    begin_s = clock()
    engine = start_engine(model_path, speculative)
    engine_start_s = clock() - begin_s
    stored: list[LatencyCheck] = []
    check_seconds: list[float] = []
    try:
        for offset, n in enumerate(planned.branches):
            if check_seconds and clock() + max(check_seconds) * n / planned.branches[
                    offset - 1] + close_s > ends_at_s:  # time grows at most in proportion to n
                break
            began_s = clock()
            stored.append(check_latency(workspace, db, engine, Configuration(
                planned.model, n, planned.speculation, table_temperature), questions, offset))
            check_seconds.append(clock() - began_s)
    finally:
        closing_s = clock()
        engine.close()
        engine_close_s = clock() - closing_s
    ratios = np.concatenate([np.log(np.array(c.measured_latencies_s)
                                    / np.array(c.replayed_latencies_s)) for c in stored])
    checked = replace(planned, branches=planned.branches[:len(stored)])
    logger.info("calibrated %s: measured/replayed %.3f over %d requests", checked.label(),
                float(np.exp(ratios.mean())), ratios.size)
    return SliceResult(checked, tuple(stored), engine_start_s, engine_close_s,
                       float(np.exp(ratios.mean())), tuple(check_seconds))


def check_latency(workspace: Workspace, db: Database, engine: StreamingEngine,
                  config: Configuration, questions: int, offset: int) -> LatencyCheck:
    """Run `questions` requests of `config` and store them as a latency check."""
    task = workspace.task()
    table = workspace.simulator.table(config.model, config.temperature)
    plan = ExecutionPlan(n=config.branches, temperature=config.temperature,
                         max_tokens=table.max_tokens, sampling_seed=SAMPLING_SEED)
    chosen = select_questions(task, CALIBRATION_SPLIT, questions, offset)
    report = measure(engine, task, chosen, plan)
    replayed = workspace.simulator.replay_latency(
        config, [o.prompt_tokens for o in report.outcomes],
        [list(o.branch_tokens) for o in report.outcomes])
    return store_check(db, engine, workspace.profile, config, workspace.spec.task,
                       "calibrate", report, replayed)

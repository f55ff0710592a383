"""Budgeted decode profiling: point order, the budget, and the run on a fake-cost engine."""

import numpy as np
import pytest
from fake_cost_engine import FakeCostEngine, step_s

from profilers import DecodeGrid
from profilers.planner import (
    BudgetPlanner,
    bisection_order,
    coarse_points,
    committee_spread,
    profile_decode_budgeted,
    run_budgeted,
)
from storage import Database, ModelRecord, ProfileStore
from tuner.core.cost_model import unbounded_step_cost

BATCHES, PROMPTS = (1, 2, 4, 8, 16, 32), (8, 32, 64, 128)


def planner() -> BudgetPlanner:
    return BudgetPlanner(BATCHES, PROMPTS, unbounded_step_cost, lambda b, p: (b, p))


def test_coarse_points_are_every_batch_at_both_prompt_ends_in_bisection_order():
    assert bisection_order((16, 1, 2, 4, 8, 2)) == [1, 16, 4, 2, 8]
    assert bisection_order(BATCHES) == [1, 32, 4, 2, 8, 16]
    assert coarse_points(BATCHES, PROMPTS)[:6] == [(1, 8), (1, 128), (32, 8), (32, 128),
                                                   (4, 8), (4, 128)]
    assert sorted(coarse_points(BATCHES, PROMPTS)) == [(b, p) for b in BATCHES
                                                       for p in (8, 128)]
    assert coarse_points((4,), (8,)) == [(4, 8)]


def test_committee_spread_is_zero_where_every_fit_agrees():
    X = np.array([(b, p) for b in (1, 4, 16) for p in (8, 64)], dtype=float)
    y = np.array([step_s(1, p) * b for b, p in X])  # exactly c1*b + c3*b*p
    spread = committee_spread(unbounded_step_cost, X, y, np.array([[8.0, 32.0]]))
    assert spread[0] == pytest.approx(0, abs=1e-6)


def test_coarse_grid_first_then_refinement_where_fits_disagree():
    report = run_budgeted(planner(), step_s, max_points=15)
    chosen = [(m.batch_size, m.prompt_tokens) for m in report.points]
    assert chosen[:12] == coarse_points(BATCHES, PROMPTS)
    assert report.stop_reason == "max points" and len(set(chosen)) == 15
    # the jump sits between batch 8 and 16: refinement must look there
    assert {b for b, _ in chosen[12:]} & {8, 16}


def test_half_the_points_fit_about_as_well_as_the_full_grid():
    every = np.array([(b, p) for b in BATCHES for p in PROMPTS], dtype=float)
    truth = np.array([step_s(int(b), int(p)) for b, p in every])
    full = unbounded_step_cost(every, truth)
    report = run_budgeted(planner(), step_s, max_points=len(every) // 2)
    X = np.array([(m.batch_size, m.prompt_tokens) for m in report.points], dtype=float)
    half = unbounded_step_cost(X, np.array([m.step_s for m in report.points]))
    full_error = np.mean(np.abs(full(every) - truth) / truth)
    half_error = np.mean(np.abs(half(every) - truth) / truth)
    assert half_error <= 1.25 * full_error


def test_points_that_would_overrun_the_budget_are_skipped():
    clock = FakeClock()

    def measure(batch, prompt):
        clock.now_s += 1000 * step_s(batch, prompt)  # measuring time ~ step cost
        return step_s(batch, prompt)

    report = run_budgeted(planner(), measure, budget_s=20.0, clock=clock)
    spent_s = sum(m.wall_s for m in report.points)
    # the estimate (wall/step ratio x predicted step) is exact here, so no overrun
    assert report.stop_reason == "budget" and spent_s <= 20.0
    assert 5 <= len(report.points) < len(BATCHES) * len(PROMPTS)
    unlimited = run_budgeted(planner(), measure, clock=clock)
    assert unlimited.stop_reason == "grid complete"


class FakeClock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self):
        return self.now_s


def test_budgeted_run_stores_each_point_and_a_rerun_measures_nothing_new(tmp_path):
    store = ProfileStore(Database(f"sqlite:///{tmp_path / 'p.db'}"))
    store.upsert_model(ModelRecord("fake-model", "fake-model", "target", 1, 1, 64))
    grid = DecodeGrid(batch_sizes=BATCHES, prompt_tokens=PROMPTS, decode_tokens=8, repeats=1,
                      warmup=0)
    engine = FakeCostEngine()
    report = profile_decode_budgeted(engine, store, grid, 3600.0, unbounded_step_cost)
    assert report.stop_reason == "grid complete" and len(report.points) == 24
    stored = {(p.batch_size, p.context_tokens): p.seconds_median
              for p in store.load_profile_set().cost_points if p.phase == "decode"}
    assert stored[(16, 68)] == pytest.approx(step_s(16, 68))
    calls = engine.calls
    again = profile_decode_budgeted(engine, store, grid, 3600.0, unbounded_step_cost)
    assert len(again.points) == 24 and engine.calls == calls
    assert profile_decode_budgeted(engine, store, grid, 0.0, unbounded_step_cost).points == ()


class SlowStartPool:
    """Engines whose start advances the fake clock by `start_s`; measuring takes no time."""

    def __init__(self, clock: FakeClock, start_s: float):
        self.clock, self.start_s, self.started = clock, start_s, []

    def get(self, model, speculative=None):
        self.clock.now_s += self.start_s
        engine = FakeCostEngine()
        engine.speculative = speculative
        self.started.append(speculative)
        return engine


def test_a_configuration_whose_share_is_below_an_engine_start_is_not_started(tmp_path):
    from profilers import SpeculativeConfig
    from profilers.planner import profile_configurations_budgeted

    store = ProfileStore(Database(f"sqlite:///{tmp_path / 'p.db'}"))
    store.upsert_model(ModelRecord("fake-model", "fake-model", "target", 1, 1, 64))
    grid = DecodeGrid(batch_sizes=(1, 2, 4), prompt_tokens=(8, 64), decode_tokens=8,
                      repeats=1, warmup=0)
    configs = [None, *(SpeculativeConfig.draft_model("fake-draft", gamma) for gamma in (1, 2))]
    clock = FakeClock()
    pool = SlowStartPool(clock, start_s=40.0)
    runs = profile_configurations_budgeted(pool, "fake-model", configs, store, grid, 100.0,
                                           unbounded_step_cost, clock=clock)
    # shares: 100/3 -> started (start unknown yet, 40 s); 60/2 = 30 <= 40 -> skipped;
    # 60/1 = 60 > 40 -> started with 20 s to measure
    assert [run.report is not None for run in runs] == [True, False, True]
    assert pool.started == [configs[0], configs[2]]
    assert runs[1].engine_start_s == 40.0
    assert runs[0].report.points == ()  # its 33 s share was all spent on the start
    assert runs[2].report.stop_reason == "grid complete"

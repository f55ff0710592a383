"""The arrival replay on synthetic costs with answers computed by hand, the Poisson case
against Lindley's recursion and the M/D/1 formula, and the load value types."""

import math

import numpy as np
import pytest
from tuner_synthetic import constant_profile, cost_grid, profile, samples

from storage import UserInputError
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.cost_model import OutOfProfiledRange
from tuner.core.load import (
    ConcurrencyLoad,
    PoissonLoad,
    TraceLoad,
    parse_load,
    parse_load_range,
    read_trace,
)
from tuner.core.simulator import Simulator
from tuner.core.simulator.load import LinearCost, ReplayInput, replay_arrivals

TASK = "arithmetic"
STEP_S, PREFILL_S = 0.01, 0.02
PER_SEQUENCE_PREFILL = LinearCost(0.015, 0.005, 0.0, 0.0, 0.0)  # 0.02 s for one prompt


def constant(step_s: float) -> LinearCost:
    return LinearCost(step_s, 0.0, 0.0, 0.0, 0.0)


def run(steps, *, arrivals_s=None, clients=None, cap=64, decode=None, prefill=None,
        prompt_tokens=8):
    steps = np.asarray(steps, dtype=float)
    return replay_arrivals(ReplayInput(
        prompt_tokens=np.full(len(steps), float(prompt_tokens)), steps=steps,
        decode=decode or constant(STEP_S), prefill=prefill or constant(PREFILL_S),
        tokens_per_step=1.0, max_num_seqs=cap,
        arrivals_s=None if arrivals_s is None else np.asarray(arrivals_s, dtype=float),
        clients=clients))


def latencies(replay) -> np.ndarray:
    return replay.finish_s - replay.arrival_s


def test_a_request_alone_is_prefill_plus_its_longest_branch():
    replay = run([[5, 20, 12]], arrivals_s=[0.0])
    assert latencies(replay)[0] == pytest.approx(PREFILL_S + 20 * STEP_S)
    assert replay.first_token_s[0] == pytest.approx(PREFILL_S)
    assert replay.peak_branches == 3


def test_one_request_at_a_time_queues_as_by_hand():
    # Cap = N: each request waits for the one before. Service 0.02 + 20 * 0.01 = 0.22 s,
    # arrivals every 0.2 s: request k waits 0.02 s more than request k - 1 did.
    replay = run([[20, 20]] * 5, arrivals_s=[0.2 * k for k in range(5)], cap=2)
    assert latencies(replay) == pytest.approx([0.22 + 0.02 * k for k in range(5)])


def test_two_requests_share_steps_and_the_batch_shrinks():
    # Step cost 0.01 + 0.005 * B: both decode together at B = 2, then the longer alone.
    decode = LinearCost(0.01, 0.005, 0.0, 0.0, 0.0)
    replay = run([[10], [30]], arrivals_s=[0.0, 0.0], decode=decode)
    first = PREFILL_S + 10 * 0.02
    assert latencies(replay) == pytest.approx([first, first + 20 * 0.015])


def test_an_arrival_waits_for_the_step_in_progress_and_joins_the_running_step():
    # Prefill 0.015 + 0.005 per sequence. A: prefill ends at 0.02, then a step every 0.01 s.
    # B arrives at 0.045, during the step that ends at 0.05; the next step decodes A (0.01)
    # with B's prompt in the same forward pass (+0.005, not a second step's 0.02), ending at
    # 0.065 with A 4 steps in. A's 6 remaining steps end at 0.125, B's 10 at 0.165.
    replay = run([[10], [10]], arrivals_s=[0.0, 0.045], prefill=PER_SEQUENCE_PREFILL)
    assert replay.first_token_s == pytest.approx([0.02, 0.065])
    assert replay.finish_s == pytest.approx([0.125, 0.165])


def test_branches_beyond_the_cap_wait_for_a_seat():
    # Cap 3, two requests of 2 branches arrive together: three are prefilled at once
    # (0.015 + 3 * 0.005 = 0.03). B's second branch waits until A's shorter branch leaves
    # (5 steps later, at 0.08) and joins the next step (0.01 + 0.005, ending at 0.095,
    # A's longer branch and B's first 6 steps in): those two end 3 steps later at 0.125;
    # B's second needs 8 steps: done at 0.175.
    replay = run([[5, 9], [9, 8]], arrivals_s=[0.0, 0.0], cap=3,
                 prefill=PER_SEQUENCE_PREFILL)
    assert replay.finish_s == pytest.approx([0.125, 0.175])
    assert replay.peak_branches == 3


def test_closed_loop_keeps_that_many_requests_in_flight():
    # Two clients, cap 1: each request runs alone; the second client's first request
    # waits for the first's. Every later request arrives the moment one is answered and
    # waits for the other client's request in progress.
    service_s = PREFILL_S + 10 * STEP_S
    replay = run([[10]] * 6, clients=2, cap=1)
    assert replay.finish_s == pytest.approx([service_s * (k + 1) for k in range(6)])
    assert latencies(replay)[2:] == pytest.approx([2 * service_s] * 4)


def lindley(arrivals_s: np.ndarray, service_s: float) -> np.ndarray:
    """Sojourn times of a single-server FIFO queue with deterministic service."""
    finish_s, out = -math.inf, []
    for arrival_s in arrivals_s:
        finish_s = max(arrival_s, finish_s) + service_s
        out.append(finish_s - arrival_s)
    return np.array(out)


def test_poisson_arrivals_one_at_a_time_are_an_md1_queue():
    # One branch, cap 1: exactly M/D/1. Every latency matches Lindley's recursion, and the
    # mean matches Pollaczek-Khinchine: S + lambda S^2 / (2 (1 - rho)).
    service_s, rate = PREFILL_S + 10 * STEP_S, 5.0
    arrivals_s = PoissonLoad(rate).arrivals_s(20000, seed=3)
    replay = run([[10]] * len(arrivals_s), arrivals_s=arrivals_s, cap=1)
    assert latencies(replay) == pytest.approx(lindley(arrivals_s, service_s))
    rho = rate * service_s
    expected_s = service_s + rate * service_s**2 / (2 * (1 - rho))
    assert latencies(replay).mean() == pytest.approx(expected_s, rel=0.03)


def test_sparse_arrivals_reproduce_the_unloaded_timing_formula():
    # Context-dependent costs and a shrinking batch: requests far apart see exactly the
    # simulator's single-request formula.
    costs = (cost_grid("m", lambda b, c: 0.004 + 0.001 * b + 2e-5 * b * c)
             + cost_grid("m", lambda b, p: 0.01 + 1e-4 * b * p, phase="prefill"))
    sim = Simulator(profile(costs=costs, accuracy=samples("m", [[("1", True, 9)] * 4])),
                    TASK)
    config = Configuration("m", 4, None, 1.0)
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=(30, 4)).astype(float)
    prompts = rng.integers(1, 200, size=30).astype(float)
    replay = sim.replay_requests(config, np.arange(30) * 100.0, prompts, lengths)
    alone_s = sim.replay_latency(config, prompts, lengths)
    assert replay.finish_s - replay.arrival_s == pytest.approx(alone_s)


def test_one_client_scores_like_the_unloaded_simulator():
    rows = [[("1", True, 10 + q), ("2", False, 30 + 2 * q)] for q in range(20)]
    sim = Simulator(constant_profile(rows, step_s=STEP_S, prefill_s=PREFILL_S), TASK)
    config = Configuration("m", 2, None, 1.0)
    alone = sim.score(config, LatencyObjective("mean"))
    loaded = sim.score(config, LatencyObjective("mean"), load=ConcurrencyLoad(1))
    assert loaded.accuracy == alone.accuracy
    assert loaded.mean_latency_s == pytest.approx(alone.mean_latency_s, rel=0.05)
    assert loaded.max_num_seqs == 2


def test_load_raises_latency_and_sizes_max_num_seqs():
    rows = [[("1", True, 40), ("1", True, 60)] for _ in range(20)]
    sim = Simulator(constant_profile(rows, step_s=STEP_S, prefill_s=PREFILL_S), TASK)
    config = Configuration("m", 2, None, 1.0)
    light = sim.score(config, load=PoissonLoad(0.5))
    heavy = sim.score(config, load=PoissonLoad(12))
    assert heavy.latency_s > light.latency_s >= 0.6
    assert light.max_num_seqs < heavy.max_num_seqs <= 16  # the profiled batches end at 16
    assert heavy.max_num_seqs % 2 == 0


def test_a_cap_above_the_profiled_batches_is_refused_naming_the_points_to_measure():
    rows = [[("1", True, 200)] * 4 for _ in range(10)]
    sim = Simulator(constant_profile(rows), TASK, max_num_seqs=64)
    with pytest.raises(OutOfProfiledRange, match=r"--batch-sizes 32,64"):
        sim.score(Configuration("m", 4, None, 1.0), load=PoissonLoad(40))


def test_a_cutoff_under_load_is_refused():
    sim = Simulator(constant_profile([[("1", True, 10)]] * 3), TASK)
    with pytest.raises(UserInputError, match="cutoff under load"):
        sim.score(Configuration("m", 1, None, 1.0), LatencyObjective(cutoff=True), 1.0,
                  load=PoissonLoad(1))


@pytest.mark.parametrize(("text", "expected"), [
    ("2rps", PoissonLoad(2.0)), ("0.5 rps", PoissonLoad(0.5)), ("4conc", ConcurrencyLoad(4)),
])
def test_loads_parse_and_print_back(text, expected):
    assert parse_load(text) == expected
    assert parse_load(expected.key()) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2", "is not a load"), ("0rps", "above 0"), ("0conc", "at least 1"),
    ("fast", "is not a load"),
])
def test_bad_loads_are_one_line_errors(text, message):
    with pytest.raises(UserInputError, match=message):
        parse_load(text)


def test_load_ranges():
    assert parse_load_range("0.5rps:8rps:6") == tuple(
        PoissonLoad(r) for r in (0.5, 2.0, 3.5, 5.0, 6.5, 8.0))
    assert parse_load_range("1conc:4conc:4") == tuple(ConcurrencyLoad(c) for c in (1, 2, 3, 4))
    for bad in ("1rps:4conc:3", "4rps:1rps:3", "1rps:2rps", "1rps:2rps:0"):
        with pytest.raises(UserInputError):
            parse_load_range(bad)


def test_poisson_arrivals_have_the_asked_rate():
    arrivals_s = PoissonLoad(4).arrivals_s(40000)
    assert arrivals_s[0] == 0 and np.all(np.diff(arrivals_s) >= 0)
    assert len(arrivals_s) / arrivals_s[-1] == pytest.approx(4, rel=0.02)


def test_trace_files_are_read_and_checked(tmp_path):
    trace = tmp_path / "arrivals.txt"
    trace.write_text("# seconds\n10.0\n10.5\n\n12  # a comment\n")
    load = parse_load(f"trace:{trace}")
    assert isinstance(load, TraceLoad) and load.offsets_s == (0.0, 0.5, 2.0)
    assert parse_load(load.key()) == load
    for text, message in (("1\nx\n", "line 2: 'x' is not a number"),
                          ("2\n1\n", "line 2: '1' is before the line above"),
                          ("-1\n", "line 1: '-1' must be a finite number"),
                          ("# nothing\n", "no arrival times")):
        trace.write_text(text)
        with pytest.raises(UserInputError, match=message):
            read_trace(trace)
    with pytest.raises(UserInputError, match="cannot read it"):
        read_trace(tmp_path / "missing.txt")

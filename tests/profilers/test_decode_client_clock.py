"""The decode profiler's client clock: one streamed request of n sampled branches."""

import pytest
from fake_streaming import ScriptedEngine

from profilers import DecodeGrid
from profilers.decode import _measure_client_clock
from storage import UserInputError


def test_client_clock_times_steps_between_first_and_last_token():
    engine = ScriptedEngine(["x" * 9], step_s=0.002)
    step_s, first_token_s = _measure_client_clock(engine, 3, [5, 6, 7], 9, 0.8)
    assert engine.submitted[0][2].n == 3 and engine.submitted[0][2].ignore_eos
    assert 0.002 <= step_s < 0.02 and 0.002 <= first_token_s < 0.02


def test_client_clock_needs_sampling():
    with pytest.raises(UserInputError, match="temperature must be > 0"):
        DecodeGrid(clock="client", temperature=0.0)
    with pytest.raises(UserInputError, match="clock must be"):
        DecodeGrid(clock="wall")

"""The extension axes take a new kind in one place: a toy speculation method and a toy vote
rule, each registered here and nowhere else, run through the search space, the simulator,
the study ranking and the preset export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from tuner_synthetic import acceptance, cost_grid, family_profile, profile

from profilers.speculation import METHODS, SpeculationMethod, register_method
from profilers.voting import (
    MAJORITY,
    VOTE_RULES,
    Replay,
    Verdict,
    VoteRule,
    finishing_order,
    register_vote_rule,
    vote_rule,
)
from storage import Speculation
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.presets import build_preset
from tuner.core.simulator import Simulator
from tuner.core.space import SearchSpace, build_space, configuration_from_params
from tuner.core.spec import StudySpec
from tuner.core.trials import TrialSummary

TOY = "toy-lookup"


@pytest.fixture
def toy_method():
    @register_method
    class ToyLookup(SpeculationMethod):
        """A draft-free method with one option, like n-gram lookup."""

        name = TOY
        needs_draft = False
        option_names = ("window",)

        def sglang_arguments(self, speculation, draft_path):
            return {"speculative-algorithm": "TOY",
                    "speculative-num-draft-tokens": speculation.gamma}

    yield ToyLookup
    del METHODS[TOY]


@pytest.fixture
def toy_rule():
    @register_vote_rule
    @dataclass(frozen=True)
    class FirstAnswer(VoteRule):
        """The first branch to finish with an answer decides; the rest are not waited for."""

        kind: ClassVar[str] = "toy-first"

        def decide(self, ballots, started):
            voting = [b for b in finishing_order(ballots) if b.answer is not None]
            return Verdict(voting[0].answer if voting else None,
                           final=bool(voting) or len(ballots) >= started)

        def replay(self, codes, finished=None, mean_logprobs=None):
            voting = codes >= 0 if finished is None else finished & (codes >= 0)
            first = np.argmax(voting, axis=-1)
            winner = np.where(voting.any(axis=-1),
                              np.take_along_axis(codes, first[..., None], -1)[..., 0], -1)
            return Replay(winner, np.where(voting.any(axis=-1), first + 1, codes.shape[-1]))

    yield FirstAnswer()
    del VOTE_RULES["toy-first"]


def with_toy_speculation():
    """The synthetic family plus the toy method measured for "big" at gamma 1 and 2."""
    base = family_profile(questions=12, k=6)
    options = "window=4"
    costs = [p for gamma in (1, 2) for p in cost_grid(
        "big", lambda b, c, g=gamma: 0.021 + 0.002 * g * b, gamma=gamma, method=TOY)]
    costs = [p.__class__(**{**p.__dict__, "spec_options": options}) for p in costs]
    record = acceptance("big", None, 2, (0.5, 0.3), method=TOY)
    record = record.__class__(**{**record.__dict__, "spec_options": options})
    return profile(costs=[*base.cost_points, *costs], accuracy=base.accuracy,
                   acceptance_records=[*base.acceptance, record],
                   models=["big", "small", "draft"])


def test_a_toy_speculation_method_is_searched_scored_and_exported(toy_method):
    prof = with_toy_speculation()
    space = build_space(prof, StudySpec(name="toy", task="arithmetic", models=["big"]))
    toy = [c for c in space.configurations()
           if c.speculation and c.speculation.method == TOY]
    assert {c.speculation.gamma for c in toy} == {1, 2}
    assert toy[0].speculation == Speculation(TOY, toy[0].speculation.gamma, None,
                                             (("window", 4),))
    for config in toy:
        assert configuration_from_params(space.params(config)) == config
    result = Simulator(prof, "arithmetic").score(toy[-1])
    assert result.tokens_per_step == pytest.approx(1.8)
    summary = TrialSummary(**result.figures().__dict__, number=3, configuration=toy[-1],
                           feasible=True)
    preset = build_preset(summary, prof, study_name="toy", task="arithmetic", deadline_s=1.0,
                          latency=LatencyObjective())
    assert json.loads(preset.serving.vllm["speculative-config"]) == {
        "method": TOY, "num_speculative_tokens": 2, "window": 4}
    assert preset.serving.sglang["speculative-algorithm"] == "TOY"


def test_a_toy_vote_rule_is_searched_and_replayed(toy_rule):
    prof = family_profile(questions=12, k=6)
    base = build_space(prof, StudySpec(name="toy", task="arithmetic", models=["small"]))
    space = SearchSpace(base.models, votes=(MAJORITY, toy_rule))
    votes = {c.vote for c in space.configurations()}
    assert votes == {MAJORITY, toy_rule}
    config = Configuration("small", 4, None, 1.0, toy_rule)
    assert configuration_from_params(space.params(config)) == config
    assert vote_rule(config.vote.key()) == toy_rule
    simulator = Simulator(prof, "arithmetic")
    first = simulator.score(config)
    majority = simulator.score(Configuration("small", 4, None, 1.0))
    # The toy rule takes the shortest answering branch; here that differs from the vote.
    assert first.accuracy != majority.accuracy

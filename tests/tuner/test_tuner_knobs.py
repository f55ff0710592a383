"""The knobs of issue 14 in the simulator, the space and the presets: votes that stop early,
votes weighed by log-probabilities, token budgets, speculation methods named by the spec."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from tuner_synthetic import (
    TASK,
    acceptance,
    constant_profile,
    cost_grid,
    family_profile,
    profile,
)

from profilers.voting import MAJORITY, vote_rule
from storage import Speculation, UserInputError
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.cost_model import ProfileIncomplete
from tuner.core.presets import build_preset, write_preset
from tuner.core.simulator import Simulator
from tuner.core.space import build_space, configuration_from_params
from tuner.core.spec import StudySpec
from tuner.core.trials import TrialSummary
from tuner.core.validate import configuration_of

EARLY = vote_rule("early-majority")


def test_early_majority_answers_as_the_full_vote_and_sooner():
    # Two agreeing short branches settle it (the other two could only tie, and ties go to
    # the earliest ballot); the long fourth is not waited for.
    rows = [[("7", True, 10), ("7", True, 12), ("7", True, 14), ("3", False, 200)]] * 5
    simulator = Simulator(constant_profile(rows, step_s=0.01, prefill_s=0.1), TASK)
    full = simulator.score(Configuration("m", 4, None, 1.0))
    early = simulator.score(Configuration("m", 4, None, 1.0, EARLY))
    assert early.accuracy == full.accuracy == 1.0
    assert full.latency_s == pytest.approx(0.1 + 2.0)  # 200 steps of 10 ms
    assert early.latency_s == pytest.approx(0.1 + 0.12)  # the second branch's 12 steps
    assert early.decode_s == pytest.approx(0.12)


def test_early_stopping_and_majority_agree_on_accuracy_of_a_noisy_family():
    simulator = Simulator(family_profile(questions=30, k=8), TASK)
    for n in (3, 5, 8):
        full = simulator.score(Configuration("big", n, None, 1.0))
        early = simulator.score(Configuration("big", n, None, 1.0, EARLY))
        assert early.accuracy == full.accuracy
        assert early.latency_s <= full.latency_s and early.mean_latency_s < full.mean_latency_s


def test_a_budget_cuts_long_branches_which_then_have_no_answer():
    rows = [[("7", True, 10), ("7", True, 30), ("3", False, 50)]] * 4
    simulator = Simulator(constant_profile(rows, step_s=0.01, prefill_s=0.1), TASK)
    config = Configuration("m", 3, None, 1.0, MAJORITY)
    assert simulator.score(config).latency_s == pytest.approx(0.6)
    cut = simulator.score(dataclasses.replace(config, max_tokens=40))
    assert cut.latency_s == pytest.approx(0.5) and cut.accuracy == 1.0  # "3" was cut
    shorter = simulator.score(dataclasses.replace(config, max_tokens=20))
    assert shorter.latency_s == pytest.approx(0.3)
    assert shorter.accuracy == 1.0  # only the 10-token "7" answered
    none_left = simulator.score(dataclasses.replace(config, max_tokens=9))
    assert none_left.accuracy == 0.0
    with pytest.raises(ProfileIncomplete, match="above the profiled 512"):
        simulator.score(dataclasses.replace(config, max_tokens=600))


def with_logprobs(prof, logprob_of):
    samples = tuple(dataclasses.replace(s, mean_logprob=logprob_of(s)) for s in prof.accuracy)
    return dataclasses.replace(prof, accuracy=samples)


def test_weighted_votes_need_logprobs_and_follow_them():
    rows = [[("7", True, 10), ("3", False, 12), ("3", False, 14)]] * 3
    plain = constant_profile(rows)
    weighted = Configuration("m", 3, None, 1.0, vote_rule("weighted"))
    with pytest.raises(ProfileIncomplete, match="needs mean log-probabilities"):
        Simulator(plain, TASK).score(weighted)
    confident = with_logprobs(plain, lambda s: -0.01 if s.answer == "7" else -3.0)
    assert Simulator(confident, TASK).score(weighted).accuracy == 1.0
    assert Simulator(confident, TASK).score(Configuration("m", 3, None, 1.0)).accuracy == 0.0


def knob_spec(**fields) -> StudySpec:
    return StudySpec(name="knobs", task=TASK, models=["big"], **fields)


def test_the_space_searches_votes_budgets_and_methods():
    prof = family_profile(questions=6, k=4)
    base = build_space(prof, knob_spec())
    space = build_space(prof, knob_spec(votes=["majority", "early-majority", "window(k=3)"],
                                        max_tokens=[100, 200]))
    assert len(space) == len(base) * 3 * 3
    assert space.budgets == (None, 200, 100)
    for config in space.configurations()[::7]:
        assert configuration_from_params(space.params(config)) == config
        assert space.contains(config)
    assert len(build_space(prof, knob_spec(methods=["ngram"]))) < len(base)
    with pytest.raises(UserInputError, match="max_tokens: 512 is not below the profiled"):
        build_space(prof, knob_spec(max_tokens=[512]))
    with pytest.raises(UserInputError, match="weighted weigh each branch"):
        build_space(prof, knob_spec(votes=["weighted"]))
    with pytest.raises(UserInputError, match="unknown vote rule 'best'"):
        build_space(prof, knob_spec(votes=["best"]))


def ngram_family():
    base = family_profile(questions=6, k=4)
    options = (("prompt_lookup_max", 3), ("prompt_lookup_min", 1))
    costs = [dataclasses.replace(p, spec_options="prompt_lookup_max=3,prompt_lookup_min=1")
             for g in (1, 2) for p in cost_grid("big", lambda b, c, g=g: 0.021 + 0.001 * g * b,
                                                gamma=g, method="ngram")]
    record = dataclasses.replace(acceptance("big", None, 2, (0.3, 0.1), method="ngram"),
                                 spec_options="prompt_lookup_max=3,prompt_lookup_min=1",
                                 verification_steps=2000)
    prof = profile(costs=[*base.cost_points, *costs], accuracy=base.accuracy,
                   acceptance_records=[*base.acceptance, record],
                   models=["big", "small", "draft"])
    return prof, Speculation("ngram", 2, None, options)


def test_ngram_is_searched_with_its_options_and_steps_without_drafts():
    prof, ngram = ngram_family()
    space = build_space(prof, knob_spec(methods=["ngram"]))
    assert {c.speculation for c in space.configurations() if c.speculation} == {
        dataclasses.replace(ngram, gamma=1), ngram}
    # 1000 drafts in 2000 target steps: half the steps proposed nothing
    result = Simulator(prof, TASK).score(Configuration("big", 2, ngram, 1.0))
    assert result.tokens_per_step == pytest.approx(1 + (300 + 100) / 2000)


def test_presets_carry_the_budget_and_rule_and_read_back(tmp_path):
    prof, ngram = ngram_family()
    config = Configuration("big", 4, ngram, 1.0, vote_rule("window(k=3)"), 200)
    result = Simulator(prof, TASK).score(config)
    summary = TrialSummary(**result.figures().__dict__, number=5, configuration=config,
                           feasible=True)
    preset = build_preset(summary, prof, study_name="knobs", task=TASK, deadline_s=5.0,
                          latency=LatencyObjective())
    assert preset.request.max_tokens == 200 and preset.request.aggregation == "window(k=3)"
    assert json.loads(preset.serving.vllm["speculative-config"]) == {
        "method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 3,
        "prompt_lookup_min": 1}
    assert preset.serving.sglang["speculative-algorithm"] == "NGRAM"
    assert configuration_of(preset, prof) == config
    profiled = dataclasses.replace(config, max_tokens=None)
    assert configuration_of(preset.model_copy(update={"request": preset.request.model_copy(
        update={"max_tokens": 512})}), prof) == profiled


def test_a_speculation_sglang_lacks_exports_for_vllm_only(tmp_path):
    prof, _ = ngram_family()
    suffix = Speculation("suffix", 2)
    config = Configuration("big", 2, suffix, 1.0)
    summary = TrialSummary(**Simulator(prof, TASK).score(Configuration("big", 2, None, 1.0)
                                                         ).figures().__dict__,
                           number=1, configuration=config, feasible=True)
    preset = build_preset(summary, prof, study_name="knobs", task=TASK, deadline_s=5.0,
                          latency=LatencyObjective())
    assert preset.serving.sglang is None
    assert json.loads(preset.serving.vllm["speculative-config"])["method"] == "suffix"
    with pytest.raises(UserInputError, match="sglang cannot run its speculation"):
        write_preset(preset, "sglang", tmp_path)
    assert write_preset(preset, "vllm", tmp_path)


def test_np_scalar_budgets_from_optuna_params_read_back():
    params = {"model": "big", "temperature": 1.0, "branches": 2, "speculation": "none",
              "vote": "adaptive(threshold=0.95)", "max_tokens": np.int64(40)}
    config = configuration_from_params(params)
    assert config.max_tokens == 40 and config.vote == vote_rule("adaptive")

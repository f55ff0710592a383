"""The search space holds exactly what the profile can score, narrowed by the spec."""

from __future__ import annotations

import pytest
from tuner_synthetic import family_profile

from storage.errors import UserInputError
from tuner.space import build_space, configuration_from_params, configuration_params
from tuner.spec import StudySpec

PROFILE = family_profile(questions=5, k=8)


def spec(**fields) -> StudySpec:
    return StudySpec(name="s", task="arithmetic", **fields)


def test_full_space_counts():
    space = build_space(PROFILE, spec())
    # big: N 1..8, no draft or draft at gamma 1..3; small: N 1..8 without drafts.
    assert len(space) == 8 * 4 + 8
    assert len(set(space.configurations())) == len(space)


def test_spec_narrows_models_branches_and_gamma():
    space = build_space(PROFILE, spec(models=["big"], branches={"min": 2, "max": 4},
                                      gamma={"max": 2}))
    configs = space.configurations()
    assert {c.model for c in configs} == {"big"}
    assert {c.branches for c in configs} == {2, 3, 4}
    assert {c.gamma for c in configs} == {0, 1, 2}
    assert len(configs) == 3 * 3


def test_gamma_zero_turns_speculation_off():
    configs = build_space(PROFILE, spec(gamma={"max": 0})).configurations()
    assert all(c.draft is None for c in configs)


def test_unknown_model_names_the_profiled_ones():
    with pytest.raises(UserInputError, match="models: huge not profiled for this task; "
                                             "profiled: big, small"):
        build_space(PROFILE, spec(models=["huge"]))


def test_unprofiled_task_is_refused():
    with pytest.raises(UserInputError, match="no accuracy profile for task 'math'"):
        build_space(PROFILE, StudySpec(name="s", task="math"))


def test_params_round_trip():
    for config in build_space(PROFILE, spec()).configurations():
        assert configuration_from_params(configuration_params(config)) == config

"""The search space holds exactly what the profile can score, narrowed by the spec."""

from __future__ import annotations

import pytest
from tuner_synthetic import family_profile

from storage import Speculation
from storage.errors import UserInputError
from tuner.core.space import build_space, configuration_from_params
from tuner.core.spec import StudySpec

PROFILE = family_profile(questions=5, k=8)


def spec(**fields) -> StudySpec:
    return StudySpec(name="s", task="arithmetic", **fields)


def test_full_space_counts():
    space = build_space(PROFILE, spec())
    # big: N 1..8, no draft or draft at gamma 1..3; small: N 1..8 without drafts.
    assert len(space) == 8 * 4 + 8
    assert len(set(space.configurations())) == len(space)


def gamma_of(config) -> int:
    return config.speculation.gamma if config.speculation else 0


def test_spec_narrows_models_branches_and_gamma():
    space = build_space(PROFILE, spec(models=["big"], branches={"min": 2, "max": 4},
                                      gamma={"max": 2}))
    configs = space.configurations()
    assert {c.model for c in configs} == {"big"}
    assert {c.branches for c in configs} == {2, 3, 4}
    assert {gamma_of(c) for c in configs} == {0, 1, 2}
    assert len(configs) == 3 * 3


def test_gamma_zero_turns_speculation_off():
    configs = build_space(PROFILE, spec(gamma={"max": 0})).configurations()
    assert all(c.speculation is None for c in configs)


def test_unknown_model_names_the_profiled_ones():
    with pytest.raises(UserInputError, match="models: huge not profiled for this task; "
                                             "profiled: big, small"):
        build_space(PROFILE, spec(models=["huge"]))


def test_unprofiled_task_is_refused():
    with pytest.raises(UserInputError, match="no accuracy profile for task 'math'"):
        build_space(PROFILE, StudySpec(name="s", task="math"))


def test_params_round_trip():
    space = build_space(PROFILE, spec())
    for config in space.configurations():
        assert configuration_from_params(space.params(config)) == config


def test_params_stored_by_release_0_1_name_a_draft_model():
    config = configuration_from_params({"model": "big", "temperature": 1.0, "branches": 3,
                                        "draft": "draft", "gamma": 2})
    assert config.speculation == Speculation("draft_model", 2, "draft")


def _with_failures(*failures: tuple[str, str | None, int, int]):
    """PROFILE plus failed decode points (model, draft, gamma, batch), e.g. out of memory."""
    import dataclasses

    from tuner_synthetic import cost_grid

    failed = [dataclasses.replace(point, seconds_samples=(), status="failed",
                                  failure_reason="out of memory")
              for model, draft, gamma, batch in failures
              for point in cost_grid(model, lambda b, c: 1.0, draft=draft, gamma=gamma,
                                     batches=(batch,), tokens=(1024,))]
    kept = [p for p in PROFILE.cost_points
            if not any((p.model, p.draft, p.gamma, p.phase, p.batch_size, p.context_tokens)
                       == (f.model, f.draft, f.gamma, "decode", f.batch_size, f.context_tokens)
                       for f in failed)]
    return dataclasses.replace(PROFILE, cost_points=(*kept, *failed))


def test_failed_batches_are_excluded_at_every_context():
    # big fails at batch 8 (one context only): big goes up to the largest batch measured
    # below it (4), not into the failed region.
    space = build_space(_with_failures(("big", None, 0, 8)), spec())
    configs = space.configurations()
    assert max(c.branches for c in configs if c.model == "big") == 4
    assert max(c.branches for c in configs if c.model == "small") == 8


def test_a_failed_draft_slice_limits_only_that_draft_and_gamma():
    space = build_space(_with_failures(("big", "draft", 2, 4)), spec(models=["big"]))
    configs = space.configurations()
    assert max(c.branches for c in configs if gamma_of(c) == 2) == 2
    assert max(c.branches for c in configs if gamma_of(c) in (0, 1, 3)) == 8

from __future__ import annotations

import pytest

from storage import UserInputError, describe_model


def test_cost_grids_hold_medians_and_failures(filled_store):
    details = describe_model(filled_store.load_profile_set(), "tb-small")
    grids = {(grid.phase, grid.speculation.draft if grid.speculation else None,
              grid.speculation.gamma if grid.speculation else 0): grid
             for grid in details.cost_grids}
    assert set(grids) == {("decode", None, 0), ("decode", "tb-draft", 2), ("prefill", None, 0)}
    plain = grids[("decode", None, 0)]
    assert plain.batch_sizes == (1, 4, 64) and plain.context_tokens == (64,)
    assert plain.median_seconds == {(1, 64): 0.011, (4, 64): 0.015, (64, 64): None}


def test_acceptance_and_accuracy(filled_store, records):
    details = describe_model(filled_store.load_profile_set(), "tb-small")
    assert details.acceptance == records.acceptance
    (stats,) = details.accuracy
    # 3 questions x 4 samples, samples 0 and 2 of each correct
    assert (stats.questions, stats.samples_per_question) == (3, 4)
    assert stats.accuracy_at_1 == pytest.approx(0.5)
    assert stats.mean_generated_tokens == pytest.approx(21.5)


def test_unknown_model_names_known_ones(filled_store):
    with pytest.raises(UserInputError, match="no model 'tb-huge'.*known models: tb-draft, "
                                             "tb-small$"):
        describe_model(filled_store.load_profile_set(), "tb-huge")

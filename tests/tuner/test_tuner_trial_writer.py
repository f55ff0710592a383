"""The bulk trial writer stores exactly what Optuna's own add_trials stores."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from tuner.core.optuna_storage import open_rdb_storage
from tuner.core.trial_writer import add_finished_trials


def trials(count: int) -> list[optuna.trial.FrozenTrial]:
    distributions = {"model": CategoricalDistribution(["a", "b"]),
                     "branches": IntDistribution(1, 16),
                     "temperature": CategoricalDistribution([0.5, 1.0])}
    return [
        optuna.trial.create_trial(
            params={"model": "ab"[i % 2], "branches": i % 16 + 1, "temperature": 1.0},
            distributions=distributions,
            value=[0.25, math.inf, -math.inf][i % 3] if i < 3 else i / 100,
            user_attrs={"accuracy": i / 100, "label": f"t{i}", "interval": [0.1, 0.2]},
            constraints={"latency": i - 5.5},
        )
        for i in range(count)
    ]


def stored(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.values, t.params, t.distributions, t.user_attrs,
             t.system_attrs, t.constraints, t.datetime_start, t.datetime_complete)
            for t in study.trials]


def test_bulk_rows_equal_add_trials_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    storage = open_rdb_storage(url)
    batch = trials(12)
    reference = optuna.create_study(storage=storage, study_name="reference",
                                    direction="maximize")
    reference.add_trials(batch[:5])
    reference.add_trials(batch[5:])
    bulk = optuna.create_study(storage=storage, study_name="bulk", direction="maximize")
    add_finished_trials(bulk, batch[:5])
    add_finished_trials(bulk, batch[5:])  # numbering continues after existing trials
    reloaded = optuna.load_study(study_name="bulk", storage=url)
    assert stored(reloaded) == stored(optuna.load_study(study_name="reference", storage=url))
    assert stored(bulk) == stored(reloaded)  # the live study object sees them too
    assert reloaded.best_trial.number == reference.best_trial.number


def test_in_memory_storage_falls_back_to_add_trials():
    study = optuna.create_study(direction="maximize")
    add_finished_trials(study, trials(4))
    assert [t.number for t in study.trials] == [0, 1, 2, 3]

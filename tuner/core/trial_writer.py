"""Write finished trials to an Optuna RDB study in one transaction.

`Study.add_trials` costs ~40 ORM statements per trial (8-25 ms each here), which made
`latts-tune run` spend seconds storing 240 scored configurations. This writes the same
rows Optuna's RDBStorage writes (trials, values, params, user and system attributes) with
one multi-row INSERT per table. It is used only with the Optuna major version whose schema
it was checked against (tests/tuner compare its rows with `add_trials`); otherwise it falls
back to `add_trials`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

CHECKED_OPTUNA_MAJOR = "5."


def add_finished_trials(study: optuna.Study, trials: Sequence[FrozenTrial]) -> None:
    """Append finished `trials` to `study` (numbers continue the study's)."""
    if not trials:
        return
    storage = getattr(study._storage, "_backend", study._storage)
    if not (isinstance(storage, optuna.storages.RDBStorage)
            and optuna.__version__.startswith(CHECKED_OPTUNA_MAJOR)):
        study.add_trials(trials)
        return
    for trial in trials:
        trial._validate()
    _bulk_insert(storage, study._study_id, trials)


def _bulk_insert(storage: optuna.storages.RDBStorage, study_id: int,
                 trials: Sequence[FrozenTrial]) -> None:
    from optuna.storages._rdb import models
    from sqlalchemy import func, insert, select, update

    with storage.engine.begin() as connection:
        # A no-op write first: it takes SQLite's write lock and PostgreSQL's row lock on the
        # study, so numbering cannot race another writer (as Optuna's own FOR UPDATE does).
        studies = models.StudyModel.__table__
        connection.execute(update(studies).where(studies.c.study_id == study_id)
                           .values(study_name=studies.c.study_name))
        table = models.TrialModel.__table__
        first = connection.execute(select(func.count()).select_from(table)
                                   .where(table.c.study_id == study_id)).scalar_one()
        connection.execute(insert(table), [_trial_row(study_id, first + index, trial)
                                           for index, trial in enumerate(trials)])
        ids: dict[int, int] = dict(connection.execute(
            select(table.c.number, table.c.trial_id)
            .where(table.c.study_id == study_id, table.c.number >= first)).all())
        children = _child_rows(models, trials, [ids[first + i] for i in range(len(trials))])
        for model, rows in children.items():
            if rows:
                connection.execute(insert(model.__table__), rows)


def _trial_row(study_id: int, number: int, trial: FrozenTrial) -> dict:
    return {
        "study_id": study_id,
        "number": number,
        "state": trial.state,
        "datetime_start": _naive_utc(trial.datetime_start),
        "datetime_complete": _naive_utc(trial.datetime_complete),
    }


def _child_rows(models, trials: Sequence[FrozenTrial], trial_ids: list[int]) -> dict:
    value_type = models.TrialValueModel.value_to_stored_repr
    rows: dict = {models.TrialValueModel: [], models.TrialParamModel: [],
                  models.TrialUserAttributeModel: [], models.TrialSystemAttributeModel: []}
    for trial, trial_id in zip(trials, trial_ids, strict=True):
        for objective, value in enumerate(trial.values or ()):
            stored, kind = value_type(value)
            rows[models.TrialValueModel].append({"trial_id": trial_id, "objective": objective,
                                                 "value": stored, "value_type": kind})
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            rows[models.TrialParamModel].append({
                "trial_id": trial_id, "param_name": name,
                "param_value": distribution.to_internal_repr(value),
                "distribution_json": distribution_to_json(distribution),
            })
        for model, attrs in ((models.TrialUserAttributeModel, trial.user_attrs),
                             (models.TrialSystemAttributeModel, trial.system_attrs)):
            rows[model].extend({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                               for key, value in attrs.items())
    return rows


def _naive_utc(moment: datetime | None) -> datetime | None:
    # Optuna's RDB schema stores naive UTC; FrozenTrial times are naive local.
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None)

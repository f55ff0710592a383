from __future__ import annotations

import sqlite3

import optuna
import pytest
from sqlalchemy import inspect, select

from storage import (
    Database,
    HardwareRecord,
    ProfileStore,
    StorageError,
    StorageUnavailable,
    UserInputError,
    resolve_url,
)
from storage.schema import HardwareRow

OUR_TABLES = {"latts_hardware", "latts_models", "latts_cost_points", "latts_acceptance",
              "latts_accuracy_samples", "latts_presets"}


def test_plain_path_becomes_absolute_sqlite_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_url("profiles.db") == f"sqlite:///{tmp_path / 'profiles.db'}"


def test_url_is_kept():
    assert resolve_url("postgresql://user@db.example/latts") == "postgresql://user@db.example/latts"


@pytest.mark.parametrize("text", ["sqlit:///x.db", "postgresql://u:secret@[::1", "  "])
def test_bad_url_says_how_to_fix(text):
    with pytest.raises(StorageUnavailable, match="sqlite:///latts-tune.db") as caught:
        resolve_url(text)
    assert "secret" not in str(caught.value)


def test_creates_our_tables(database):
    with database.session() as session:
        tables = set(inspect(session.get_bind()).get_table_names())
    assert OUR_TABLES <= tables


def test_sqlite_path_in_missing_directory_is_unavailable(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    with pytest.raises(StorageUnavailable) as caught:
        Database(url)
    assert str(caught.value) == (f"cannot open database {url!r}: unable to open database "
                                 "file; check the --storage URL")


def test_unreachable_postgresql_is_unavailable():
    # Without a driver installed this fails on the driver, with one on the refused port.
    with pytest.raises(StorageUnavailable, match="cannot open database 'postgresql://"):
        Database("postgresql://127.0.0.1:1/x?connect_timeout=2")


def test_read_only_sqlite_file_is_unavailable_on_write(tmp_path):
    path = tmp_path / "ro.db"
    Database(str(path)).close()
    read_only_url = f"sqlite:///file:{path}?mode=ro&uri=true"  # read-only even for root
    with Database(read_only_url) as db, pytest.raises(StorageUnavailable, match="readonly"):
        ProfileStore(db).upsert_hardware(HardwareRecord("fp", "cpu", 2, 8.0))


def test_session_rolls_back_on_error(database):
    with pytest.raises(UserInputError), database.session() as session:
        session.add(HardwareRow(fingerprint="fp", cpu_model="cpu", cpu_cores=2, memory_gib=8.0,
                                gpu_count=0))
        session.flush()
        raise UserInputError("stop")
    with database.session() as session:
        assert session.scalars(select(HardwareRow)).all() == []


def test_measurement_without_its_hardware_is_a_storage_error(store, records):
    with pytest.raises(StorageError, match="hardware and models before"):
        store.add_cost_point(records.cost_points[0])


def test_lives_beside_optuna_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna_storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name="s", storage=optuna_storage).optimize(
        lambda trial: trial.suggest_float("x", 0, 1), n_trials=2
    )
    with Database(url) as db:
        ProfileStore(db).upsert_hardware(HardwareRecord("fp", "cpu", 2, 8.0))
    study = optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url))
    assert len(study.trials) == 2
    with sqlite3.connect(tmp_path / "shared.db") as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        tables = {name for (name,) in rows}
    assert OUR_TABLES <= tables and {"studies", "trials"} <= tables


def test_reopening_keeps_data(tmp_path):
    path = str(tmp_path / "x.db")
    with Database(path) as db:
        ProfileStore(db).upsert_hardware(HardwareRecord("fp", "cpu", 2, 8.0))
    with Database(path) as db:
        assert [record.fingerprint for record in ProfileStore(db).hardware()] == ["fp"]

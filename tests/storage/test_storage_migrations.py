"""Databases and profile files written by release 0.1 keep working (Alembic migrations)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from storage import Database, ProfileRecords, ProfileStore, Speculation, read_profile_file
from storage.database import VERSION_TABLE, _alembic_config, head_revision
from storage.schema import Base

RELEASE_0_1 = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0"
TB_DRAFT_2 = Speculation("draft_model", 2, "tb-draft")


def release_0_1_database(folder: Path) -> str:
    """A copy of a database written by release 0.1 (profile, study, preset, validation)."""
    path = folder / "latts-tune.db"
    with gzip.open(RELEASE_0_1 / "latts-tune.db.gz") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    return f"sqlite:///{path}"


def schema_differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "version_table": VERSION_TABLE, "include_name": _ours})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _ours(name, type_, parent_names) -> bool:
    # Optuna's tables share the database; only ours are compared.
    return type_ != "table" or str(name).startswith("latts_")


def test_a_release_0_1_database_is_upgraded_to_the_current_schema(tmp_path):
    url = release_0_1_database(tmp_path)
    with Database(url) as db:
        profile = ProfileStore(db).load_profile_set()
    assert {r.speculation for r in profile.acceptance} == {
        Speculation("draft_model", 1, "tb-draft"), TB_DRAFT_2}
    assert {p.speculation for p in profile.cost_points} == {
        None, Speculation("draft_model", 1, "tb-draft"), TB_DRAFT_2}
    assert schema_differences(url) == []


def test_a_new_database_is_created_at_the_newest_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Database(url).close()
    engine = create_engine(url)
    with engine.connect() as connection:
        assert MigrationContext.configure(connection, opts={
            "version_table": VERSION_TABLE}).get_current_revision() == head_revision()
    engine.dispose()
    assert schema_differences(url) == []


def test_a_release_0_1_profile_file_reads_as_draft_model_speculation():
    records = read_profile_file(RELEASE_0_1 / "profile_v1.json.gz")
    assert {r.speculation for r in records.acceptance} == {
        Speculation("draft_model", 1, "tb-draft"), TB_DRAFT_2}
    assert sum(p.speculation is None for p in records.cost_points) == 40


def test_the_migration_goes_down_to_0_1_and_back_with_the_data(database_url):
    records = read_profile_file(RELEASE_0_1 / "profile_v1.json.gz")
    with Database(database_url) as db:
        ProfileStore(db).write(records)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(_alembic_config(connection), "0.1.0")
        columns = {c["name"] for c in inspect(engine).get_columns("latts_acceptance")}
        assert "method" not in columns
    finally:
        engine.dispose()
    with Database(database_url) as db:  # opening upgrades again
        profile = ProfileStore(db).load_profile_set()
        assert TB_DRAFT_2 in {r.speculation for r in profile.acceptance}
        assert len(profile.cost_points) == len(records.cost_points)
        ProfileStore(db).write(ProfileRecords(acceptance=profile.acceptance))  # no duplicates
        assert len(ProfileStore(db).load_profile_set().acceptance) == 2

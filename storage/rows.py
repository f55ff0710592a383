"""Conversion between ORM rows and frozen records, and a portable insert-or-replace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.schema import NO_DRAFT

# Dialects with INSERT ... ON CONFLICT DO UPDATE (atomic even with concurrent writers).
_CONFLICT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def to_values(record: Any) -> dict[str, Any]:
    """Column values for a record: tuples become JSON lists, datetimes naive UTC."""
    values = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, datetime):
            value = _naive_utc(value)
        values[field.name] = value
    if "draft" in values and values["draft"] is None:
        values["draft"] = NO_DRAFT
    return values


def to_record(row: Any, record_class: type) -> Any:
    """The frozen record for a row: lists become tuples, datetimes UTC-aware."""
    kwargs = {}
    for field in fields(record_class):
        value = getattr(row, field.name)
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, datetime):
            value = value.replace(tzinfo=UTC)
        kwargs[field.name] = value
    if kwargs.get("draft") == NO_DRAFT:
        kwargs["draft"] = None
    return record_class(**kwargs)


def upsert(
    session: Session, row_class: Any, rows: Sequence[dict[str, Any]], key: Sequence[str]
) -> None:
    """Insert rows, replacing any existing row with the same `key` columns."""
    if not rows:
        return
    conflict_insert = _CONFLICT_INSERTS.get(session.get_bind().dialect.name)
    if conflict_insert is None:
        _upsert_by_select(session, row_class, rows, key)
        return
    statement: Any = conflict_insert(row_class.__table__)
    updates = {name: statement.excluded[name] for name in rows[0] if name not in key}
    statement = statement.on_conflict_do_update(index_elements=list(key), set_=updates)
    session.execute(statement, list(rows))


def _upsert_by_select(
    session: Session, row_class: Any, rows: Sequence[dict[str, Any]], key: Sequence[str]
) -> None:
    for values in rows:
        match = and_(*(getattr(row_class, name) == values[name] for name in key))
        row = session.scalars(select(row_class).where(match)).one_or_none()
        if row is None:
            session.add(row_class(**values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
    session.flush()


def _naive_utc(moment: datetime) -> datetime:
    # Naive datetimes are taken as UTC; aware ones are converted. SQLite keeps no zone.
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)

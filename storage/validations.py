"""ValidationStore: runs of presets on the real engine, kept next to the presets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from storage.database import Database
from storage.records import ValidationRecord
from storage.rows import to_record, to_values
from storage.schema import ValidationRow


class ValidationStore:
    """Validations of stored presets, oldest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, validation: ValidationRecord) -> ValidationRecord:
        """Store a validation (its preset must be stored); returns it with id and time set."""
        if validation.created_at is None:
            validation = replace(validation, created_at=datetime.now(UTC))
        values = to_values(validation)
        values.pop("id")
        with self._db.session() as session:
            row = ValidationRow(**values)
            session.add(row)
            session.flush()
            new_id = row.id
        return replace(validation, id=new_id)

    def for_preset(self, preset_name: str) -> list[ValidationRecord]:
        """Every validation of `preset_name`, oldest first."""
        with self._db.session() as session:
            rows = session.scalars(select(ValidationRow)
                                   .where(ValidationRow.preset_name == preset_name)
                                   .order_by(ValidationRow.id))
            return [to_record(row, ValidationRecord) for row in rows]

"""PresetStore: named presets, replaced by name."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from storage.database import Database
from storage.errors import UserInputError
from storage.records import PresetRecord
from storage.rows import to_record, to_values, upsert
from storage.schema import PresetRow


class PresetStore:
    """Presets made from a study's trials, by unique name."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, preset: PresetRecord) -> PresetRecord:
        """Store `preset` (replacing one of the same name); returns it with `created_at` set."""
        if preset.created_at is None:
            preset = replace(preset, created_at=datetime.now(UTC))
        with self._db.session() as session:
            upsert(session, PresetRow, [to_values(preset)], key=("name",))
        return preset

    def get(self, name: str) -> PresetRecord:
        """The preset called `name`; UserInputError naming the known presets if missing."""
        with self._db.session() as session:
            row = session.get(PresetRow, name)
            if row is not None:
                return to_record(row, PresetRecord)
        known = ", ".join(preset.name for preset in self.list()) or "none yet"
        raise UserInputError(f"no preset {name!r} in {self._db.display_url}; known presets: "
                             f"{known}")

    def list(self) -> list[PresetRecord]:
        """All presets, sorted by name."""
        with self._db.session() as session:
            rows = session.scalars(select(PresetRow).order_by(PresetRow.name))
            return [to_record(row, PresetRecord) for row in rows]

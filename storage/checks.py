"""LatencyCheckStore: calibration and validation runs, measured against replayed latency."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from storage.database import Database
from storage.records import LatencyCheck
from storage.rows import to_record, to_values
from storage.schema import LatencyCheckRow


class LatencyCheckStore:
    """Latency checks of each machine, oldest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, check: LatencyCheck) -> LatencyCheck:
        """Store a check (its hardware must be stored); returns it with id and time set."""
        if check.measured_at is None:
            check = replace(check, measured_at=datetime.now(UTC))
        values = to_values(check)
        values.pop("id")
        with self._db.session() as session:
            row = LatencyCheckRow(**values)
            session.add(row)
            session.flush()
            new_id = row.id
        return replace(check, id=new_id)

    def on(self, hardware_fingerprint: str, cost_fingerprint: str | None = None
           ) -> list[LatencyCheck]:
        """Checks run on `hardware_fingerprint` (against one cost machine, if given)."""
        query = select(LatencyCheckRow).where(
            LatencyCheckRow.hardware_fingerprint == hardware_fingerprint)
        if cost_fingerprint is not None:
            query = query.where(LatencyCheckRow.cost_fingerprint == cost_fingerprint)
        with self._db.session() as session:
            rows = session.scalars(query.order_by(LatencyCheckRow.id))
            return [to_record(row, LatencyCheck) for row in rows]

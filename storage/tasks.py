"""TaskDefinitionStore: task definitions by id, each stored once and never silently changed."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import select

from storage.database import Database
from storage.errors import UserInputError
from storage.schema import TaskDefinitionRow


def definition_digest(body: dict) -> str:
    """sha256 of `body` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _differences(stored: dict, given: dict) -> str:
    keys = sorted(key for key in stored.keys() | given.keys() if stored.get(key) != given.get(key))
    return ", ".join(keys) or "none"


class TaskDefinitionStore:
    """Task definitions (JSON bodies) by task id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, task_id: str, body: dict, source: str) -> None:
        """Store `body` under `task_id` unless stored already. A different body under the
        same id is refused (UserInputError naming `source` and the fields that differ):
        profiles keyed by the id would otherwise mix two tasks."""
        digest = definition_digest(body)
        with self._db.session() as session:
            row = session.get(TaskDefinitionRow, task_id)
            if row is None:
                session.add(TaskDefinitionRow(task_id=task_id, digest=digest, body=body,
                                              created_at=datetime.now(UTC)))
                return
            if row.digest != digest:
                raise UserInputError(
                    f"{source} defines task {task_id!r} differently from the definition "
                    f"stored under that id in {self._db.display_url} (differs: "
                    f"{_differences(row.body, body)}); give the changed task a new id")

    def get(self, task_id: str) -> dict | None:
        """The body stored under `task_id`, or None."""
        with self._db.session() as session:
            row = session.get(TaskDefinitionRow, task_id)
            return None if row is None else dict(row.body)

    def ids(self) -> list[str]:
        """Every stored task id, sorted."""
        with self._db.session() as session:
            return sorted(session.scalars(select(TaskDefinitionRow.task_id)))

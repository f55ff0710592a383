"""Work claims: several profiling workers on one database split the work between them.

A worker claims a unit (one decode point, one question) before measuring it; the claim is a
row with a unique key, so exactly one worker gets it. A claim whose worker died is taken
over: at once when that worker ran on this host, after `stale_after_s` otherwise.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from storage.database import Database
from storage.errors import StorageError
from storage.schema import ClaimRow

DEFAULT_STALE_AFTER_S = 600.0


def worker_id() -> str:
    """This process as a claim owner: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ClaimStore:
    """Claim units of work by key in the shared database."""

    def __init__(self, db: Database, owner: str | None = None,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S) -> None:
        self._db = db
        self.owner = owner or worker_id()
        self._stale_after = timedelta(seconds=stale_after_s)

    def claim(self, key: str) -> bool:
        """Take `key` for this worker; False when another live worker holds it."""
        now = datetime.now(UTC).replace(tzinfo=None)
        try:
            with self._db.session() as session:
                session.add(ClaimRow(key=key, owner=self.owner, claimed_at=now))
            return True
        except StorageError as error:  # the key is taken: the session translated the
            if not isinstance(error.__cause__, IntegrityError):  # IntegrityError
                raise
        return self._take_over_if_stale(key, now)

    def _take_over_if_stale(self, key: str, now: datetime) -> bool:
        with self._db.session() as session:
            holder = session.get(ClaimRow, key)
            if holder is None or holder.owner == self.owner:
                return holder is not None
            if now - holder.claimed_at < self._stale_after and _may_be_alive(holder.owner):
                return False
            # compare-and-set on the old timestamp: one of several takers wins
            taken = session.execute(
                update(ClaimRow)
                .where(ClaimRow.key == key, ClaimRow.claimed_at == holder.claimed_at)
                .values(owner=self.owner, claimed_at=now)
            )
            return getattr(taken, "rowcount", 0) == 1


def _may_be_alive(owner: str) -> bool:
    """False only for an owner on this host whose process is gone (a crashed run)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

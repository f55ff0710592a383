"""Work claims: one owner per unit of profiling work, and crashed owners' work taken over."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

from sqlalchemy import update

from storage import ClaimStore
from storage.schema import ClaimRow


def test_a_unit_goes_to_exactly_one_live_worker(database):
    first, second = ClaimStore(database, owner="host-a:1"), ClaimStore(database, owner="host-b:2")
    assert first.claim("decode|x|1")
    assert not second.claim("decode|x|1")
    assert first.claim("decode|x|1")  # its own claim again (a retry in the same run)
    assert second.claim("decode|x|2")


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(database):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    import socket

    dead_owner = f"{socket.gethostname()}:{finished.stdout.strip()}"
    assert ClaimStore(database, owner=dead_owner).claim("accuracy|q1")
    assert ClaimStore(database).claim("accuracy|q1")


def test_a_remote_claim_is_taken_over_only_when_stale(database):
    assert ClaimStore(database, owner="elsewhere:7").claim("decode|y")
    assert not ClaimStore(database, owner="here:1", stale_after_s=600).claim("decode|y")
    with database.session() as session:
        session.execute(update(ClaimRow).values(
            claimed_at=datetime.utcnow() - timedelta(hours=1)))
    assert ClaimStore(database, owner="here:1", stale_after_s=600).claim("decode|y")
    assert not ClaimStore(database, owner="elsewhere:7", stale_after_s=600).claim("decode|y")

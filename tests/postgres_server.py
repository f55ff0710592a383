"""A throwaway PostgreSQL server for the tests, started from the Debian binaries.

The server lives in a temporary directory (data, unix socket, log), listens on 127.0.0.1 at
a free port, trusts local connections and trades durability for speed (fsync off). As root
it runs as the `postgres` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BINARY_GLOB = "/usr/lib/postgresql/*/bin/initdb"
SUPERUSER = "latts"
START_TIMEOUT_S = 60
FAST_SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                 "-c max_connections=100 -c shared_buffers=32MB")


class PostgresUnavailable(RuntimeError):
    """The binaries are missing or the server did not start; the message says why."""


def find_binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, or None."""
    found = sorted(glob.glob(BINARY_GLOB), key=lambda path: int(Path(path).parts[-3]))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    """A running server; `url(database)` gives SQLAlchemy URLs, `stop()` removes it all."""

    bin_dir: Path
    root: Path
    port: int
    _run_as: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement on the `postgres` database outside a transaction."""
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql)

    def create_database(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        _run(self, "pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop",
             check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """initdb + start in a fresh temporary directory; raises PostgresUnavailable."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise PostgresUnavailable(f"PostgreSQL binaries not found ({BINARY_GLOB}); install "
                                  "them with `apt-get install postgresql` (bash .ci/setup does)")
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="latts-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, root, _free_port(), run_as)
    try:
        _run(server, "initdb", "-D", str(server.data_dir), "-U", SUPERUSER, "-A", "trust",
             "-E", "UTF8", "--no-sync", "--no-instructions")
        options = f"-k {root} -c listen_addresses=127.0.0.1 -p {server.port} {FAST_SETTINGS}"
        _run(server, "pg_ctl", "-D", str(server.data_dir), "-o", options,
             "-l", str(root / "server.log"), "-w", "-t", str(START_TIMEOUT_S), "start")
    except (subprocess.CalledProcessError, OSError) as error:
        detail = getattr(error, "stderr", "") or _tail(root / "server.log")
        server.stop()
        raise PostgresUnavailable(f"PostgreSQL did not start: {error}\n{detail}") from error
    return server


def _run(server: PostgresServer, program: str, *args: str, check: bool = True) -> None:
    command = [str(server.bin_dir / program), *args]
    kwargs = {"user": server._run_as, "cwd": server.root} if server._run_as else {}
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, command,
                                            result.stdout, result.stderr)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


def timed_start() -> tuple[PostgresServer, float]:
    """(server, seconds it took to start)."""
    started = time.perf_counter()
    server = start_server()
    return server, time.perf_counter() - started

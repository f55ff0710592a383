"""Database URLs, the engine and the one session helper that owns commit/rollback/close."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command as alembic_command
from sqlalchemy import URL, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import StorageError, StorageUnavailable
from storage.schema import Base
from storage.waits import NETWORK_TIMEOUT_S, announced

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
URL_HINT = "use a file path or a URL like sqlite:///latts-tune.db or postgresql://user@host/db"


def resolve_url(text: str) -> str:
    """A plain file path becomes `sqlite:///<absolute path>`; a URL is validated and kept.

    Raises StorageUnavailable (with a fix) for a malformed URL or an unknown backend.
    """
    if not text.strip():
        raise StorageUnavailable(f"empty database URL; {URL_HINT}")
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        make_url(text).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)  # hide a password
        raise StorageUnavailable(f"invalid database URL {shown!r}: {_first_line(error)}; "
                                 f"{URL_HINT}") from error
    return text


# Optuna's RDBStorage tables, which share the database with ours.
OPTUNA_TABLES = frozenset({
    "studies", "study_directions", "study_user_attributes", "study_system_attributes",
    "trials", "trial_user_attributes", "trial_system_attributes", "trial_params",
    "trial_values", "trial_intermediate_values", "trial_heartbeats", "version_info",
    "alembic_version",
})
MIN_CONNECT_TIMEOUT_S = 2  # libpq's floor: it reads anything smaller as 2 s


class ForeignDatabase(StorageUnavailable):
    """The database holds tables that neither latts-tune nor Optuna wrote."""


class Database:
    """An open database holding our tables (created if missing); use `.session()` to work.

    A PostgreSQL server gets `connect_timeout_s` to accept a connection (added to the URL
    unless it names its own, so Optuna's connections have it too).
    """

    def __init__(self, url: str, connect_timeout_s: float = NETWORK_TIMEOUT_S) -> None:
        resolved = resolve_url(url)
        self._parsed = make_url(resolved)
        self.url = _with_connect_timeout(resolved, self._parsed, connect_timeout_s)
        self._engine = _create_engine(make_url(self.url))
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            with self._announced_connect(connect_timeout_s):
                migrate(self._engine)
        except SQLAlchemyError as error:
            self._engine.dispose()
            raise StorageUnavailable(f"cannot open database {self.display_url!r}: "
                                     f"{_detail(error)}; check the --storage URL") from error
        except ForeignDatabase as error:
            self._engine.dispose()
            raise ForeignDatabase(f"database {self.display_url!r} {error}; name a new or a "
                                  "latts-tune database with --storage") from None
        logger.debug("opened database %s", self.display_url)

    def _announced_connect(self, timeout_s: float):
        """A notice if a database server is slow to accept the connection (a SQLite file
        waits only for a lock, `SQLITE_BUSY_TIMEOUT_S`)."""
        if self._parsed.get_backend_name() == "sqlite":
            return contextlib.nullcontext()
        return announced(f"the database server of {self.display_url} to accept a connection",
                         timeout_s)

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return self._parsed.render_as_string(hide_password=True)

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error, always closed.

        SQLAlchemy errors become StorageUnavailable (connection, locking, read-only) or
        StorageError (anything else).
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as error:
            session.rollback()
            raise self._translate(error) from error
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session whose queries all see one committed state, however many.

        Readers (`profiles list`, reports) run several queries; writers commit between them.
        PostgreSQL: a REPEATABLE READ transaction; SQLite: one explicit read transaction.
        """
        with self._engine.connect() as connection:
            if self.dialect_name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            elif self.dialect_name == "sqlite":
                connection.exec_driver_sql("BEGIN")
            session = Session(bind=connection)
            try:
                yield session
            except SQLAlchemyError as error:
                raise self._translate(error) from error
            finally:
                session.close()
                connection.rollback()

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    def _translate(self, error: SQLAlchemyError) -> Exception:
        if isinstance(error, OperationalError | InterfaceError):
            return StorageUnavailable(
                f"database {self.display_url!r} is unavailable: {_detail(error)}; check the "
                "--storage URL, that the server is up and that the database is writable"
            )
        detail = _detail(error)
        if "foreign key" in detail.lower():
            detail += " (store a measurement's hardware and models before it)"
        return StorageError(f"database operation failed on {self.display_url!r}: {detail}")


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "latts_alembic_version"
BASELINE_REVISION = "0.1.0"  # databases written before migrations existed
MIGRATION_LOCK = 7_417_760  # PostgreSQL advisory lock key: one migrating process at a time


def migrate(engine: Engine) -> None:
    """Create our tables in a new database, or upgrade those an older release wrote
    (Alembic, version table `latts_alembic_version`); one transaction."""
    with engine.begin() as connection:
        if _schema_revision(connection) == head_revision():
            return
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK})
        tables = set(inspect(connection).get_table_names())
        foreign = foreign_tables(connection, tables)
        if foreign:  # before any write: another application's data stays as it was
            raise ForeignDatabase(f"holds tables neither latts-tune nor Optuna wrote "
                                  f"({', '.join(foreign[:5])}{', ...' if foreign[5:] else ''})")
        config = _alembic_config(connection)
        if not {t for t in tables if t.startswith("latts_")} - {VERSION_TABLE}:
            Base.metadata.create_all(connection)
            alembic_command.stamp(config, "head")
            return
        if VERSION_TABLE not in tables:
            alembic_command.stamp(config, BASELINE_REVISION)
        alembic_command.upgrade(config, "head")


def foreign_tables(connection, tables: set[str]) -> list[str]:
    """Tables of `tables` that are neither ours (latts_*) nor Optuna's; Optuna's names
    count as Optuna's only beside its `version_info` table (an unrelated `studies` table
    is another application's)."""
    unknown = {t for t in tables if not t.startswith("latts_")} - OPTUNA_TABLES
    optuna = tables & OPTUNA_TABLES
    if optuna and not _is_optuna_schema(connection, tables):
        unknown |= optuna
    return sorted(unknown)


def _is_optuna_schema(connection, tables: set[str]) -> bool:
    if "version_info" not in tables:
        return False
    inspector = inspect(connection)
    columns = {c["name"] for c in inspector.get_columns("version_info")}
    if not {"schema_version", "library_version"} <= columns:
        return False
    return "studies" not in tables or "study_name" in {
        c["name"] for c in inspector.get_columns("studies")}


@functools.cache
def head_revision() -> str:
    """The newest schema revision this release knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None  # the migrations folder ships with the package
    return head


def _schema_revision(connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _with_connect_timeout(text: str, url: URL, timeout_s: float) -> str:
    """`text`, with `connect_timeout` for a PostgreSQL server unless it has one (without
    one, a server that accepts and never answers held a command for 133 s)."""
    if url.get_backend_name() != "postgresql" or "connect_timeout" in url.query:
        return text
    seconds = max(MIN_CONNECT_TIMEOUT_S, math.ceil(timeout_s))
    return url.update_query_dict({"connect_timeout": str(seconds)}).render_as_string(
        hide_password=False)


def _create_engine(url: URL) -> Engine:
    is_sqlite = url.get_backend_name() == "sqlite"
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if is_sqlite else {}
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not is_sqlite)
    except ImportError as error:
        display_url = url.render_as_string(hide_password=True)
        raise StorageUnavailable(
            f"cannot open database {display_url!r}: database driver not installed "
            f"({_first_line(error)}); install it (e.g. pip install 'psycopg[binary]') or name "
            "an installed driver in the URL (e.g. postgresql+psycopg://...)"
        ) from error
    if is_sqlite:
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    return engine


def _enable_sqlite_foreign_keys(dbapi_connection, connection_record) -> None:
    # SQLite ignores foreign keys unless asked per connection; PostgreSQL always checks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _detail(error: SQLAlchemyError) -> str:
    return _first_line(getattr(error, "orig", None) or error)


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__

"""Alembic environment: runs on the connection `storage.database.migrate` hands over."""

from alembic import context

from storage.schema import Base

VERSION_TABLE = "latts_alembic_version"

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite changes constraints by copying the table
)
with context.begin_transaction():
    context.run_migrations()

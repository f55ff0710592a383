"""Alembic migrations of latts-tune's own tables (version table `latts_alembic_version`,
apart from Optuna's `alembic_version` in the same database). Revisions are named by the
release whose schema they produce; `storage.database` runs them when a database opens."""

"""Release 0.2.0: rows keyed by the speculation method; latency checks.

Adds `method` and `spec_options` to latts_cost_points and latts_acceptance (rows with a
draft become method "draft_model"), puts both into the unique keys, and drops the foreign
key from latts_acceptance.draft to latts_models (draft-free methods such as n-gram have
no draft model). Creates latts_latency_checks (calibration and validation runs: measured
against replayed latency per request). Adds latts_acceptance.verification_steps (lookup
methods skip steps in the draft counter) and latts_accuracy_samples.mean_logprob (for
confidence-weighted votes); both nullable, NULL in rows written before.

Revision ID: 0.2.0
Revises: 0.1.0
"""

import sqlalchemy as sa
from alembic import op

revision = "0.2.0"
down_revision = "0.1.0"
branch_labels = None
depends_on = None

COST_KEY_0_1 = ("hardware_fingerprint", "engine_version", "model", "draft", "gamma", "phase",
                "batch_size", "context_tokens")
COST_KEY_0_2 = ("hardware_fingerprint", "engine_version", "model", "method", "draft", "gamma",
                "spec_options", "phase", "batch_size", "context_tokens")
ACCEPTANCE_KEY_0_1 = ("hardware_fingerprint", "engine_version", "target", "draft", "gamma",
                      "task", "temperature")
ACCEPTANCE_KEY_0_2 = ("hardware_fingerprint", "engine_version", "target", "method", "draft",
                      "gamma", "spec_options", "task", "temperature")
COST_UNIQUE = "uq_latts_cost_points_hardware_fingerprint"
ACCEPTANCE_UNIQUE = "uq_latts_acceptance_hardware_fingerprint"
ACCEPTANCE_DRAFT_FK = "fk_latts_acceptance_draft_latts_models"


def _add_method_columns(table: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("method", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("spec_options", sa.String(256), nullable=False,
                                   server_default=""))
    op.execute(f"UPDATE {table} SET method = 'draft_model' WHERE draft <> ''")


def upgrade() -> None:
    _create_latency_checks()
    _add_method_columns("latts_cost_points")
    _add_method_columns("latts_acceptance")
    with op.batch_alter_table("latts_acceptance") as batch:
        batch.add_column(sa.Column("verification_steps", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("latts_accuracy_samples") as batch:
        batch.add_column(sa.Column("mean_logprob", sa.Float(), nullable=True))
    with op.batch_alter_table("latts_cost_points") as batch:
        batch.drop_constraint(COST_UNIQUE, type_="unique")
        batch.create_unique_constraint(COST_UNIQUE, list(COST_KEY_0_2))
    with op.batch_alter_table("latts_acceptance") as batch:
        batch.drop_constraint(ACCEPTANCE_UNIQUE, type_="unique")
        batch.drop_constraint(ACCEPTANCE_DRAFT_FK, type_="foreignkey")
        batch.create_unique_constraint(ACCEPTANCE_UNIQUE, list(ACCEPTANCE_KEY_0_2))


def _create_latency_checks() -> None:
    op.create_table(
        "latts_latency_checks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("hardware_fingerprint", sa.String(128),
                  sa.ForeignKey("latts_hardware.fingerprint"), nullable=False),
        sa.Column("engine_version", sa.String(64), nullable=False),
        sa.Column("cost_fingerprint", sa.String(128), nullable=False),
        sa.Column("cost_engine_version", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("draft", sa.String(256), nullable=False),
        sa.Column("gamma", sa.Integer(), nullable=False),
        sa.Column("spec_options", sa.String(256), nullable=False),
        sa.Column("branches", sa.Integer(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("measured_latencies_s", sa.JSON(), nullable=False),
        sa.Column("replayed_latencies_s", sa.JSON(), nullable=False),
        sa.Column("measured_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_latts_latency_checks"),
    )
    op.create_index("ix_latts_latency_checks_hardware_fingerprint", "latts_latency_checks",
                    ["hardware_fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_latts_latency_checks_hardware_fingerprint", "latts_latency_checks")
    op.drop_table("latts_latency_checks")
    with op.batch_alter_table("latts_accuracy_samples") as batch:
        batch.drop_column("mean_logprob")
    with op.batch_alter_table("latts_acceptance") as batch:
        batch.drop_column("verification_steps")
    with op.batch_alter_table("latts_acceptance") as batch:
        batch.drop_constraint(ACCEPTANCE_UNIQUE, type_="unique")
        batch.create_unique_constraint(ACCEPTANCE_UNIQUE, list(ACCEPTANCE_KEY_0_1))
        batch.create_foreign_key(ACCEPTANCE_DRAFT_FK, "latts_models", ["draft"], ["name"])
        batch.drop_column("spec_options")
        batch.drop_column("method")
    with op.batch_alter_table("latts_cost_points") as batch:
        batch.drop_constraint(COST_UNIQUE, type_="unique")
        batch.create_unique_constraint(COST_UNIQUE, list(COST_KEY_0_1))
        batch.drop_column("spec_options")
        batch.drop_column("method")

"""Release 0.3.0: task definitions stored by id (latts_task_definitions).

Revision ID: 0.3.0
Revises: 0.2.0
"""

import sqlalchemy as sa
from alembic import op

revision = "0.3.0"
down_revision = "0.2.0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "latts_task_definitions",
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name="pk_latts_task_definitions"),
    )


def downgrade() -> None:
    op.drop_table("latts_task_definitions")

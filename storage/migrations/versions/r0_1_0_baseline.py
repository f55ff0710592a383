"""Release 0.1.0: the schema `create_all` wrote before migrations existed.

A database holding our tables but no version table is stamped with this revision, then
upgraded; nothing to do here.

Revision ID: 0.1.0
"""

revision = "0.1.0"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

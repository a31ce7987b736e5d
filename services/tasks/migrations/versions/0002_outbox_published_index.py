"""outbox: index on published rows, for the retention prune

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_published", "outbox", ["published_at"],
                    postgresql_where=sa.text("published_at IS NOT NULL"),
                    sqlite_where=sa.text("published_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_outbox_published", table_name="outbox")

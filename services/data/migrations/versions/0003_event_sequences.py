"""processed events: the producer's sequence number; per-producer confirmed sequence

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("processed_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_processed_events_seq", "processed_events", ["seq"])
    watermarks = op.create_table(
        "event_watermarks",
        sa.Column("producer", sa.String(64), primary_key=True),
        sa.Column("confirmed_seq", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(watermarks, [{"producer": "tasks", "confirmed_seq": 0}])


def downgrade() -> None:
    op.drop_table("event_watermarks")
    op.drop_index("ix_processed_events_seq", table_name="processed_events")
    op.drop_column("processed_events", "seq")

"""outbox: a per-producer sequence number on every published event, and its counter

Published rows are kept until the consumer confirms their sequence (end-to-end
delivery, issue 19): the relay numbers rows as it publishes them, from a counter row
that never goes back, so the consumer can tell a gap from an event not yet sent.

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
    op.add_column("outbox", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_outbox_seq", "outbox", ["seq"], unique=True)
    counter = op.create_table(
        "outbox_sequence",
        sa.Column("producer", sa.String(64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counter, [{"producer": "tasks", "last_seq": 0}])


def downgrade() -> None:
    op.drop_table("outbox_sequence")
    op.drop_index("ix_outbox_seq", table_name="outbox")
    op.drop_column("outbox", "seq")

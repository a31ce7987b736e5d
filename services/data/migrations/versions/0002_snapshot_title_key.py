"""task snapshots: title_key, the normalised title popular titles are counted by

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from services.data.titles import TITLE_KEY_LENGTH, title_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Rows keyed per round trip while filling the column in.
BATCH = 1000


def _fill_title_keys() -> None:
    """Existing rows get their key in Python (the one normalisation, on every backend),
    in batches by primary key."""
    snapshots = sa.table("task_snapshots", sa.column("task_id", sa.Uuid()), sa.column("title", sa.String()),
                         sa.column("title_key", sa.String()))
    update = (snapshots.update().where(snapshots.c.task_id == sa.bindparam("b_task_id"))
              .values(title_key=sa.bindparam("b_title_key")))
    bind = op.get_bind()
    after = None
    while True:
        query = sa.select(snapshots.c.task_id, snapshots.c.title).order_by(snapshots.c.task_id).limit(BATCH)
        if after is not None:
            query = query.where(snapshots.c.task_id > after)
        rows = bind.execute(query).all()
        if not rows:
            return
        bind.execute(update, [{"b_task_id": task_id, "b_title_key": title_key(title)} for task_id, title in rows])
        after = rows[-1][0]


def upgrade() -> None:
    op.add_column("task_snapshots", sa.Column("title_key", sa.String(TITLE_KEY_LENGTH), nullable=True))
    _fill_title_keys()
    with op.batch_alter_table("task_snapshots") as batch:
        batch.alter_column("title_key", existing_type=sa.String(TITLE_KEY_LENGTH), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("task_snapshots") as batch:
        batch.drop_column("title_key")

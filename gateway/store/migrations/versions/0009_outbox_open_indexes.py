"""the outbox indexed for claims that read only what is still to deliver, however many delivered messages it keeps:
its open messages, and an ordering key's blocking messages, in partial indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The partial indexes' predicates as this revision writes them (gateway.store.models.OUTBOX_OPEN_SQL and
#: OUTBOX_BLOCKING_SQL): a later change of those constants needs a revision of its own.
OPEN = "state IN ('pending', 'in_flight')"
BLOCKING = "state IN ('pending', 'in_flight', 'dead')"


def upgrade() -> None:
    op.create_index("ix_outbox_open", "outbox", ["id"], sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    op.create_index(
        "ix_outbox_blocking",
        "outbox",
        ["ordering_key", "id"],
        sqlite_where=sa.text(BLOCKING),
        postgresql_where=sa.text(BLOCKING),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_blocking", table_name="outbox")
    op.drop_index("ix_outbox_open", table_name="outbox")

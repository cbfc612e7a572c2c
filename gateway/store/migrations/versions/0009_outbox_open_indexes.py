"""the outbox's open messages indexed apart: a claim reads only what is still to deliver, however many delivered
messages the table keeps

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

#: The partial index's predicate as this revision writes it (gateway.store.models.OUTBOX_OPEN_SQL): a later change of
#: that constant needs a revision of its own.
OPEN = "state IN ('pending', 'in_flight')"


def upgrade() -> None:
    op.create_index("ix_outbox_open", "outbox", ["id"], sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))


def downgrade() -> None:
    op.drop_index("ix_outbox_open", table_name="outbox")

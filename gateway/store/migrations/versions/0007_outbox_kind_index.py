"""outbox messages of one kind by time: the deadline watch reads its recent alerts at every run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:00:00.000000
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_kind_created", "outbox", ["kind", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_kind_created", table_name="outbox")

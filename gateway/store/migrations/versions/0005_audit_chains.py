"""audit trail in chains: concurrent writers append to different chains

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("chain", sa.Integer(), server_default="0", nullable=False))
        batch.drop_constraint("uq_audit_prev_hash", type_="unique")
        batch.create_unique_constraint("uq_audit_chain_prev_hash", ["chain", "prev_hash"])
        batch.create_index("ix_audit_chain_id", ["chain", "id"])


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_index("ix_audit_chain_id")
        batch.drop_constraint("uq_audit_chain_prev_hash", type_="unique")
        batch.create_unique_constraint("uq_audit_prev_hash", ["prev_hash"])
        batch.drop_column("chain")

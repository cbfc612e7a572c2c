"""procedure rules (fees after result, suspension), calendar version of deadlines

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 04:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("procedures") as batch:
        batch.add_column(sa.Column("fees_after_result", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("suspension", sa.String(length=8), server_default="pause", nullable=False))
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("calendar_version", sa.String(length=96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("calendar_version")
    with op.batch_alter_table("procedures") as batch:
        batch.drop_column("suspension")
        batch.drop_column("fees_after_result")

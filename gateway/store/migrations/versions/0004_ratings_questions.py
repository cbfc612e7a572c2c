"""satisfaction ratings and citizens' questions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dossier_id", sa.Integer(), nullable=False),
        sa.Column("dossier_code", sa.String(length=96), nullable=False),
        sa.Column("agency_code", sa.String(length=64), nullable=False),
        sa.Column("procedure_code", sa.String(length=64), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dossier_id"], ["dossiers.id"], name=op.f("fk_ratings_dossier_id_dossiers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint("dossier_id", name=op.f("uq_ratings_dossier_id")),
    )
    op.create_index(op.f("ix_ratings_agency_code"), "ratings", ["agency_code"], unique=False)
    op.create_index(op.f("ix_ratings_rated_at"), "ratings", ["rated_at"], unique=False)
    op.create_table(
        "questions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency_code", sa.String(length=64), nullable=False),
        sa.Column("procedure_code", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reply_channel", sa.String(length=16), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=True),
        sa.Column("route", sa.String(length=8), nullable=False),
        sa.Column("asked_at", UTCDateTime(), nullable=False),
        sa.Column("answer_by", UTCDateTime(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.Text(), nullable=True),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questions")),
    )
    op.create_index(op.f("ix_questions_agency_code"), "questions", ["agency_code"], unique=False)
    op.create_index(op.f("ix_questions_answered_at"), "questions", ["answered_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_questions_answered_at"), table_name="questions")
    op.drop_index(op.f("ix_questions_agency_code"), table_name="questions")
    op.drop_table("questions")
    op.drop_index(op.f("ix_ratings_rated_at"), table_name="ratings")
    op.drop_index(op.f("ix_ratings_agency_code"), table_name="ratings")
    op.drop_table("ratings")

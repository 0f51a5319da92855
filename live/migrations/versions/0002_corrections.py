"""Corrections (current and replaced) and each prediction's final corrected label.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("truth", sa.String(200)))
        batch.add_column(sa.Column("truth_source", sa.String(16)))
        batch.add_column(sa.Column("truth_known", sa.Boolean))
    op.create_table(
        "corrections",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("known_label", sa.Boolean, nullable=False),
        sa.Column("text", sa.Text),
        sa.UniqueConstraint("case_id", "source", "target", name="uq_corrections_case_source_target"),
    )
    op.create_index("ix_corrections_received_at", "corrections", ["received_at"])
    op.create_index("ix_corrections_corrected_at", "corrections", ["corrected_at"])
    op.create_table(
        "correction_history",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_correction_history_case_id", "correction_history", ["case_id"])


def downgrade() -> None:
    op.drop_table("correction_history")
    op.drop_table("corrections")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("truth_known")
        batch.drop_column("truth_source")
        batch.drop_column("truth")

"""The decision log: one row per prediction, one per prediction and target.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("routing_path", sa.String(16)),
        sa.Column("place_source", sa.String(16)),
        sa.Column("n_tokens", sa.Integer),
        sa.Column("n_unseen", sa.Integer),
        sa.Column("text", sa.Text),
    )
    op.create_index("ix_decisions_case_id", "decisions", ["case_id"])
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_table(
        "predictions",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("decision_id", _Id, sa.ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_case_target", "predictions", ["case_id", "target"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("decisions")

"""Covering indexes for live quality: its two scans group in index order and read no table rows.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_predictions_quality", "predictions",
                    ["model_version", "target", "label", "needs_review", "truth_known", "truth", "truth_source",
                     "created_at"])
    op.create_index("ix_decisions_quality", "decisions",
                    ["model_version", "needs_review", "created_at", "n_tokens", "n_unseen"])


def downgrade() -> None:
    op.drop_index("ix_decisions_quality", table_name="decisions")
    op.drop_index("ix_predictions_quality", table_name="predictions")

"""Prediction tallies: live quality counts a window's predictions per hour instead of through an index over
every prediction; that index now holds the corrected predictions only.

Writing a prediction inserted an entry in the middle of ``ix_predictions_quality`` (ordered by version, target,
label, ...): about 30 of the writer thread's 55 µs per decision, on the core the service's predictions share
(BENCHMARKS.md, issue 13).  Now a batch adds to a few rows of ``prediction_tallies`` at the end of the table,
and ``ix_predictions_corrected`` is partial (``truth IS NOT NULL``).  The tallies of the predictions already in
the log are counted here, once.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CORRECTED = "truth IS NOT NULL"
KEYS = ["model_version", "target", "label", "needs_review", "truth_known", "truth", "truth_source", "created_at"]


def upgrade() -> None:
    op.create_table(
        "prediction_tallies",
        sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(100), primary_key=True),
        sa.Column("label", sa.String(200), primary_key=True),
        sa.Column("needs_review", sa.Boolean, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "sqlite":  # created_at is text, 'YYYY-MM-DD HH:MM:SS.ffffff', in UTC
        hour = "CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) / 3600"
    else:
        hour = "CAST(floor(extract(epoch from created_at) / 3600) AS BIGINT)"
    op.execute(f"INSERT INTO prediction_tallies (hour, model_version, target, label, needs_review, n) "
               f"SELECT {hour}, model_version, target, label, needs_review, count(*) FROM predictions "
               f"GROUP BY 1, model_version, target, label, needs_review")
    op.drop_index("ix_predictions_quality", table_name="predictions")
    op.create_index("ix_predictions_corrected", "predictions", KEYS, sqlite_where=sa.text(CORRECTED),
                    postgresql_where=sa.text(CORRECTED))


def downgrade() -> None:
    op.drop_index("ix_predictions_corrected", table_name="predictions")
    op.create_index("ix_predictions_quality", "predictions", KEYS)
    op.drop_table("prediction_tallies")

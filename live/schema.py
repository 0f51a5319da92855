"""The decision log's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

``decisions``: one row per prediction the service made (a case, a time, a model version, where the place came
from, the masked text only when a setting asks for it).  ``predictions``: one row per decision and target, with
the label, its score and review flag, and ``truth``: the case's final corrected label for that target, kept up
to date when a correction arrives, so live accuracy is one scan of one table.  ``corrections``: the current
correction of each (case, source, target); ``correction_history``: every correction a later one replaced.
``prediction_tallies``: how many predictions each (hour, version, target, label, review) has, written with the
predictions, so live quality counts a window's predictions from a few rows an hour instead of an index over
every prediction (which made each write ~2.5x dearer: BENCHMARKS.md, issue 13).

The schema changes only through Alembic migrations (``live/migrations``); ``SCHEMA_REVISION`` is the head.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = ["metadata", "decisions", "predictions", "prediction_tallies", "corrections", "correction_history",
           "SCHEMA_REVISION", "SOURCES", "MAX_CASE_ID", "MAX_LABEL", "MAX_TARGET", "TALLY_SECONDS", "CORRECTED"]

SCHEMA_REVISION = "0004"
TALLY_SECONDS = 3600  # a tally's period: its ``hour`` is the seconds since 1970-01-01 UTC // TALLY_SECONDS
CORRECTED = "truth IS NOT NULL"  # the rows of ix_predictions_corrected
SOURCES = ("dispatcher", "agency_return", "audit")  # who corrected a case
MAX_CASE_ID = 200
MAX_LABEL = 200
MAX_TARGET = 100

# an autoincrementing 64-bit key on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY
_Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

decisions = Table(
    "decisions", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", String(MAX_CASE_ID), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("routing_path", String(16)),        # directory / flat; null without routing
    Column("place_source", String(16)),        # text / hint / guess / none; null without routing
    Column("n_tokens", Integer),               # drift: the text's tokens (a sample of decisions)
    Column("n_unseen", Integer),               # ... and how many the model never saw in training
    Column("text", Text),                      # masked text, only with HOTLINE_DECISION_LOG_TEXTS
    Index("ix_decisions_case_id", "case_id"),
    Index("ix_decisions_created_at", "created_at"),
    # live quality's scan (``live.quality.decision_counts``): grouped in index order, no table reads
    Index("ix_decisions_quality", "model_version", "needs_review", "created_at", "n_tokens", "n_unseen"),
)

predictions = Table(
    "predictions", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("decision_id", _Id, ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
    Column("case_id", String(MAX_CASE_ID), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("target", String(MAX_TARGET), nullable=False),
    Column("label", String(MAX_LABEL), nullable=False),
    Column("score", Float, nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("truth", String(MAX_LABEL)),          # the final corrected label; null until one arrives
    Column("truth_source", String(16)),
    Column("truth_known", Boolean),              # was the corrected label one the model knows
    Index("ix_predictions_created_at", "created_at"),
    Index("ix_predictions_case_target", "case_id", "target"),
    # live quality's scan of the corrected predictions (``live.quality.prediction_counts``): its GROUP BY in
    # index order, so SQLite streams it instead of sorting them.  Partial: a new prediction (no truth yet) is
    # not in it, so writing one costs no insert in the middle of this index; the correction that sets its
    # truth puts it there
    Index("ix_predictions_corrected", "model_version", "target", "label", "needs_review", "truth_known", "truth",
          "truth_source", "created_at", sqlite_where=text(CORRECTED), postgresql_where=text(CORRECTED)),
)

prediction_tallies = Table(
    "prediction_tallies", metadata,
    Column("hour", BigInteger, primary_key=True, autoincrement=False),  # UTC hours since 1970 (TALLY_SECONDS)
    Column("model_version", String(64), primary_key=True),
    Column("target", String(MAX_TARGET), primary_key=True),
    Column("label", String(MAX_LABEL), primary_key=True),
    Column("needs_review", Boolean, primary_key=True),
    Column("n", BigInteger, nullable=False),
    # the hour leads the key: a batch's tallies are the last hour's few rows, at the end of the table
    sqlite_with_rowid=False,
)

corrections = Table(
    "corrections", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", String(MAX_CASE_ID), nullable=False),
    Column("source", String(16), nullable=False),
    Column("target", String(MAX_TARGET), nullable=False),
    Column("label", String(MAX_LABEL), nullable=False),
    Column("corrected_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("known_label", Boolean, nullable=False),
    Column("text", Text),                        # masked text of a case the service never saw (with the setting)
    UniqueConstraint("case_id", "source", "target", name="uq_corrections_case_source_target"),
    Index("ix_corrections_received_at", "received_at"),
    Index("ix_corrections_corrected_at", "corrected_at"),
)

correction_history = Table(
    "correction_history", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("case_id", String(MAX_CASE_ID), nullable=False),
    Column("source", String(16), nullable=False),
    Column("target", String(MAX_TARGET), nullable=False),
    Column("label", String(MAX_LABEL), nullable=False),
    Column("corrected_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("replaced_at", DateTime(timezone=True), nullable=False),
    Index("ix_correction_history_case_id", "case_id"),
)

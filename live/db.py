"""Opening the decision log's database: an engine tuned for the dialect, and the schema migrated to head.

SQLite (the default, a file beside the model store) runs in WAL mode so that the service's writer, the
corrections route and a reader (``GET /quality``, ``hotline report --live``) do not block each other, with a
busy timeout so that several worker processes take turns.  PostgreSQL (``postgresql+psycopg://...``) is for
several service replicas sharing one log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from classifier.errors import DecisionLogError

__all__ = ["open_engine", "migrate", "schema_revision", "default_url", "describe_url"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_FILE = "decisions.sqlite"


def default_url(store_path: str | Path) -> str:
    """The embedded default: ``decisions.sqlite`` inside the model store folder (the quick start needs no
    server; the store lists only version folders, so the file is never taken for a model)."""
    return f"sqlite:///{Path(store_path).resolve() / DEFAULT_FILE}"


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def open_engine(url: str, busy_timeout_s: float = 5.0, connect_timeout_s: float = 5.0) -> Engine:
    """An engine for ``url``; nothing is connected yet.  ``busy_timeout_s``: how long a SQLite writer waits
    for another's lock; ``connect_timeout_s``: how long a PostgreSQL connection attempt may take."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DecisionLogError(f"the decision log URL {url!r} is not a database URL ({exc}); use e.g. "
                               "sqlite:////var/lib/hotline/decisions.sqlite or "
                               "postgresql+psycopg://user:password@host/dbname") from None
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout_s))}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise DecisionLogError(f"cannot use the decision log URL {describe_url(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed transaction survives a process crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), keeping every row: an upgrade never loses a log."""
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), revision)
    except SQLAlchemyError as exc:
        raise DecisionLogError(f"cannot prepare the decision log at {describe_url(str(engine.url))}: "
                               f"{type(exc).__name__}: {exc}") from None


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()

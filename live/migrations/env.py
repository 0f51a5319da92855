"""Alembic environment: migrations run on the connection ``live.db.migrate`` hands over (no alembic.ini)."""

from alembic import context

from live.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

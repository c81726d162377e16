"""Alembic environment: the engine is handed in by ``splitledger.store.migrate``."""

from __future__ import annotations

from alembic import context

from splitledger.store.tables import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    # SQLite: the connection's own BEGIN IMMEDIATE listener would nest inside Alembic's.
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()

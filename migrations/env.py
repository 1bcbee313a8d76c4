"""Alembic environment: runs against the engine handed over by app.db, or DATABASE_URL."""

from alembic import context
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.db import get_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or get_engine()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it to a new one and dropping the old: with
            # foreign keys enforced, dropping a table that other rows reference fails (the
            # pragma is a no-op inside a transaction, hence before it).
            connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA foreign_keys=OFF"
            )
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        before = context.get_context().get_current_revision()
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        if sqlite:
            driver = connection.connection.driver_connection
            # Checked only when a migration ran (the rows a table copy may have broken): the
            # check reads every row that references another, so that every start of a large
            # database would take seconds for nothing.
            migrated = context.get_context().get_current_revision() != before
            broken = driver.execute("PRAGMA foreign_key_check").fetchall() if migrated else []  # type: ignore[union-attr]
            driver.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
            if broken:
                raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")


run_migrations_online()

"""Database engine, session dependency, the one way a use case writes, and migrations."""

import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from app.config import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_WRITE = "passerelle_write"
_write_locks: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """One connection per serving thread (see Settings.threads), plus a few for the cache
    poller and the command line. hide_parameters: a database error must never carry a
    person's contact data into a log."""
    size = pool_size or get_settings().threads
    pool = {"pool_size": size, "max_overflow": 5, "pool_timeout": 30}
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
            **pool,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **pool)
    _write_locks[engine] = threading.Lock()
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so that _sqlite_begin decides
    # how each transaction starts (SQLAlchemy's documented recipe for pysqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes SQLite's write lock at BEGIN: it can then never fail half-way with
    # "database is locked" when another writer committed since its first read.
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(session: Session) -> Iterator[None]:
    """Wraps a use case that writes: it must start the session's transaction, and commits in
    it. On SQLite, writers of this process take turns on a lock (waking at once, where
    SQLite's busy handler sleeps and retries), then BEGIN IMMEDIATE. PostgreSQL needs neither.
    Whatever is left uncommitted at the end (an error) is rolled back before the turn ends."""
    if session.in_transaction():
        raise RuntimeError("writing() must start the session's transaction")
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    sqlite = engine.dialect.name == "sqlite"
    lock = _write_locks.get(engine) if sqlite else None
    if lock is not None:
        lock.acquire()
    try:
        session.connection(execution_options={_WRITE: True})
        yield
    finally:
        if session.in_transaction():
            session.rollback()
        if lock is not None:
            lock.release()


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


async def app_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for one request. Async on purpose: its close runs on the event loop, so a
    request never waits for a free thread while it still holds a connection."""
    session = Session(request.app.state.engine)
    try:
        yield session
    finally:
        session.close()


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
EngineDep = Annotated[Engine, Depends(app_engine)]


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def migrations_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head

"""Database engine, how use cases get a session (Db), the one way to write, migrations."""

import asyncio
import contextlib
import hashlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends, Request
from sqlalchemy import Table, event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, SQLModel, create_engine
from starlette.concurrency import run_in_threadpool

from app.config import Settings, get_settings

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_WRITE = "passerelle_write"
SQLITE_BUSY_MS = 30_000
_write_locks: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()


def make_engine(url: str) -> Engine:
    """One connection per serving thread (see Settings.threads), plus a few for the cache
    poller and the command line. hide_parameters: a database error must never carry a
    person's contact data into a log."""
    pool = {"pool_size": get_settings().threads, "max_overflow": 5, "pool_timeout": 30}
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
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
    # "database is locked" when another writer committed since its first read. Straight to
    # the driver: these statements return nothing, and this runs for every transaction.
    driver = connection.connection.driver_connection
    assert driver is not None
    if not connection.get_execution_options().get(_WRITE, False):
        driver.execute("BEGIN")
    elif not _on_loop.get():
        driver.execute("BEGIN IMMEDIATE")
    else:
        # On the event loop, never wait for another process's write: give up at once.
        driver.execute("PRAGMA busy_timeout = 0")
        try:
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise WouldWait from exc
        finally:
            driver.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")


def engine_of(session: Session) -> Engine:
    """The engine a session was opened on (the key of this process's caches and locks)."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return engine


@contextmanager
def writing(session: Session) -> Iterator[None]:
    """Wraps a use case that writes: it must start the session's transaction, and commits in
    it. On SQLite, writers of this process take turns on a lock (waking at once, where
    SQLite's busy handler sleeps and retries), then BEGIN IMMEDIATE. PostgreSQL needs neither.
    Whatever is left uncommitted at the end (an error) is rolled back before the turn ends."""
    if session.in_transaction():
        raise RuntimeError("writing() must start the session's transaction")
    engine = engine_of(session)
    sqlite = engine.dialect.name == "sqlite"
    lock = _write_locks.get(engine) if sqlite else None
    if lock is not None and not lock.acquire(blocking=not _on_loop.get()):
        raise WouldWait
    try:
        session.connection(execution_options={_WRITE: True})
        yield
    finally:
        if session.in_transaction():
            session.rollback()
        if lock is not None:
            lock.release()


class WouldWait(Exception):
    """On the event loop, the write lock was taken: the use case goes to a thread instead."""


_on_loop: ContextVar[bool] = ContextVar("passerelle_write_on_loop", default=False)


class Db:
    """What a route needs of the database. A use case runs with a session of its own, opened
    and closed in the thread (or, for SQLite writes, the loop turn) that runs it: a connection
    is only ever held by running code, never by a request waiting for a thread or for the
    loop, and there are as many connections as threads. (The first version held connections
    across those waits and stalled above 56 connections.)"""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._turn: asyncio.Lock | None = None  # SQLite writes on the loop, one per turn

    def _run(self, use_case: Callable[[Session], T]) -> T:
        with Session(self.engine) as session:
            return use_case(session)

    async def read(self, use_case: Callable[[Session], T]) -> T:
        """A use case that only reads, in the thread pool."""
        return await run_in_threadpool(self._run, use_case)

    async def write(self, use_case: Callable[[Session], T]) -> T:
        """A use case that writes (it starts with app.db.writing).

        On SQLite, first right here on the event loop: its calls are local and take
        microseconds, and writers take turns anyway, so a thread only adds a hop and
        contention for the interpreter (make bench: 1.5 ms of CPU per orientation on the loop,
        2.2 ms through a writer thread). Should the write lock be held (by a thread of this
        process, or by another process such as an import), the loop never waits for it: the
        use case, which has written nothing, runs again in the thread pool, where waiting is
        harmless. On PostgreSQL, always in the thread pool: network round trips must not hold
        up the loop."""
        if self.engine.dialect.name == "sqlite":
            if self._turn is None:
                self._turn = asyncio.Lock()
            # One write per turn of the loop: between two writes the loop reads, accepts and
            # answers what is waiting (a health probe, a read), instead of running a queue of
            # writes back to back and answering those seconds late under a burst.
            async with self._turn:
                token = _on_loop.set(True)
                try:
                    return self._run(use_case)
                except WouldWait:
                    pass
                finally:
                    _on_loop.reset(token)
                    await asyncio.sleep(0)
        return await run_in_threadpool(self._run, use_case)


async def get_db(request: Request) -> Db:
    return request.app.state.db  # type: ignore[no-any-return]


DbDep = Annotated[Db, Depends(get_db)]


_inserts: dict[tuple[Any, str, tuple[str, ...]], tuple[str, list[str] | None, list[Any]]] = {}


def insert_row(session: Session, model: type[SQLModel], row: dict[str, Any]) -> None:
    """One INSERT of a plain row in the session's transaction, through the driver's cursor:
    the SQL and the type conversions are SQLAlchemy's own, compiled once per table, dialect
    and set of columns, but the row skips the ORM and Core execution machinery, the largest
    share of an orientation's CPU time (see make bench). Rows go in the order written."""
    connection = session.connection()
    dialect = connection.dialect
    table: Table = model.__table__  # type: ignore[attr-defined]
    names = tuple(row)
    key = (table, dialect.name, names)
    prepared = _inserts.get(key)
    if prepared is None:
        compiled = table.insert().compile(dialect=dialect, column_keys=list(names))
        order = list(compiled.positiontup) if compiled.positional else None  # type: ignore[arg-type]
        processors = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ]
        prepared = _inserts[key] = (str(compiled), order, processors)
    sql, order, processors = prepared
    values = {
        name: process(value) if process else value
        for (name, value), process in zip(row.items(), processors, strict=True)
    }
    params: Any = tuple(values[name] for name in order) if order is not None else values
    try:
        connection.connection.cursor().execute(sql, params)
    except dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(sql, None, exc, hide_parameters=True) from exc


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def _lock_key(name: str) -> int:
    """A stable 64-bit key for PostgreSQL's advisory locks, from a readable name."""
    return int.from_bytes(hashlib.sha256(f"passerelle:{name}".encode()).digest()[:8], "big",
                          signed=True)


@contextmanager
def exclusive(engine: Engine, name: str, wait: bool = False) -> Iterator[bool]:
    """One process of a fleet at a time: yields True while this process holds the advisory
    lock `name` (PostgreSQL's pg_advisory_lock, on a connection of its own, released at the end
    or when the connection dies), False if another holds it and `wait` is False. SQLite: always
    True (one serving process; its writers take turns anyway)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = _lock_key(name)
    with engine.connect() as connection:
        if wait:
            connection.execute(select(func.pg_advisory_lock(key)))
            held = True
        else:
            held = bool(connection.execute(select(func.pg_try_advisory_lock(key))).scalar())
        connection.commit()  # the lock is the session's: no transaction stays open with it
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(DBAPIError):  # a dead connection released it already
                    connection.execute(select(func.pg_advisory_unlock(key)))
                    connection.commit()


def migrate(engine: Engine) -> None:
    """Upgrades to the last revision. Several instances starting at once on an empty database
    take turns on an advisory lock: the first migrates, the others then find nothing to do."""
    with exclusive(engine, "migrate", wait=True):
        command.upgrade(alembic_config(engine), "head")


def migrations_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head

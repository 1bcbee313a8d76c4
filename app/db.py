"""Database engine, how use cases get a session (Db), the one way to write, migrations."""

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Table, event, func, select, text
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, SQLModel, create_engine

from app.config import Settings, get_settings

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_WRITE = "passerelle_write"
SQLITE_BUSY_MS = 30_000
logger = logging.getLogger("passerelle")
_write_locks: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()


def _sqlite_from_hint(_compiler: SQLiteCompiler, _table: Any, hint: str) -> str:
    return hint


# `Select.with_hint(table, "INDEXED BY …", "sqlite")`: SQLAlchemy's hook for a hint after a
# table's name, which its SQLite dialect leaves unwritten (app.services.scope.by_past_due_index).
SQLiteCompiler.get_from_hint_text = _sqlite_from_hint  # type: ignore[method-assign,assignment]


def _json_text(value: Any) -> str:
    """A JSON column's text: orjson's, as the answers' (the standard library's encoder was
    1.4 % of an orientation's CPU, py-spy at c32); keys that are not text become text, as
    json.dumps makes them."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str) -> Engine:
    """One connection per serving thread (see Settings.threads), plus a few for the cache
    poller and the command line. hide_parameters: a database error must never carry a
    person's contact data into a log."""
    options: dict[str, Any] = {
        "pool_size": get_settings().threads,
        "max_overflow": 5,
        "pool_timeout": 30,
        "json_serializer": _json_text,
        "json_deserializer": orjson.loads,
    }
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
            hide_parameters=True,
            **options,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        # Savepoints (a group commit's, Db.write) straight to the driver: SQLAlchemy compiles
        # each as a statement, 10 % of an orientation's CPU in a group (py-spy, make bench).
        dialect: Any = engine.dialect
        dialect.do_savepoint = partial(_savepoint, "SAVEPOINT")
        dialect.do_release_savepoint = partial(_savepoint, "RELEASE")
        dialect.do_rollback_to_savepoint = partial(_savepoint, "ROLLBACK TO")
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **options)
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


_TRANSACTION_LOST = "La base de données a annulé l'écriture en cours : réessayez."


def _in_transaction(connection: Connection) -> bool:
    """Whether SQLite still has the connection's transaction (it ends one by itself on some
    errors: a full disk, an I/O error, ON CONFLICT ROLLBACK)."""
    try:
        return bool(connection.connection.driver_connection.in_transaction)  # type: ignore[union-attr]
    except Exception:  # an invalidated connection: no transaction either
        return False


def _savepoint(verb: str, connection: Connection, name: str) -> None:
    if _in_transaction(connection):
        raw_execute(connection, f"{verb} {name}")
    elif verb != "ROLLBACK TO":
        # Outside a transaction SAVEPOINT would begin one of its own, and RELEASE commit it:
        # a savepoint's work is never committed but by its transaction.
        raise StorageUnavailable(_TRANSACTION_LOST)
    # ROLLBACK TO with the transaction gone: nothing is left to undo; the error that ended it
    # is what the caller must see, not "no such savepoint".


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
    """The engine a session was opened on (the key of this process's caches and locks), or
    that of the connection it joins (a group commit's, Db.write)."""
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
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
    grouped = _GROUP in session.info  # its group holds the lock and SQLite's, in a savepoint
    sqlite = engine.dialect.name == "sqlite"
    lock = _write_locks.get(engine) if sqlite and not grouped else None
    if lock is not None and not lock.acquire(blocking=not _on_loop.get()):
        raise WouldWait
    try:
        session.connection(execution_options=None if grouped else {_WRITE: True})
        yield
    finally:
        if session.in_transaction():
            session.rollback()
        if lock is not None:
            lock.release()


class WouldWait(Exception):
    """On the event loop, the write lock was taken: the use case goes to a thread instead."""


_on_loop: ContextVar[bool] = ContextVar("passerelle_write_on_loop", default=False)
_GROUP = "passerelle_group"  # Session.info key: the session writes in a group commit
# Writes per group commit at most; the next ones wait for its commit, then open the next. A
# group runs in one turn of the loop (8 orientations: ~20 ms on the bench's machine, what a
# health probe may wait), and 8 already share 7/8 of a transaction's fixed costs.
GROUP_LIMIT = 8


class _Group:
    """Writes of the event loop's turn in one SQLite transaction (Db.write, grouped): each in
    a savepoint of its own, committed together at the next turn, answered after the commit."""

    def __init__(self, connection: Connection, lock: threading.Lock) -> None:
        self.connection = connection
        self.transaction = connection.get_transaction()
        self.lock = lock
        self.members = 0
        # A future per member waiting for the commit, and per writer waiting for room: one
        # whose request is cancelled cancels its own only.
        self.answered: list[asyncio.Future[None]] = []
        self.full: list[asyncio.Future[None]] = []
        self.on_commit: list[Callable[[], None]] = []
        self.fault: BaseException | None = None  # a member's error that ended the transaction


def when_durable(session: Session, callback: Callable[[], None]) -> None:
    """Runs `callback` once what `session` just committed is in the database: now, or, in a
    group commit, after the group's (a savepoint released is not yet a commit)."""
    group: _Group | None = session.info.get(_GROUP)
    if group is None:
        callback()
    else:
        group.on_commit.append(callback)


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
        self._group: _Group | None = None  # the open group commit (SQLite, on the loop)

    def _run(self, use_case: Callable[[Session], T]) -> T:
        with Session(self.engine) as session:
            return use_case(session)

    async def read(self, use_case: Callable[[Session], T]) -> T:
        """A use case that only reads, in the thread pool."""
        return await anyio.to_thread.run_sync(self._run, use_case)

    async def write(self, use_case: Callable[[Session], T], grouped: bool = False) -> T:
        """A use case that writes (it starts with app.db.writing).

        On SQLite, first right here on the event loop: its calls are local and take
        microseconds, and writers take turns anyway, so a thread only adds a hop and
        contention for the interpreter (make bench: 1.5 ms of CPU per orientation on the loop,
        2.2 ms through a writer thread). Should the write lock be held (by a thread of this
        process, or by another process such as an import), the loop never waits for it: the
        use case, which has written nothing, runs again in the thread pool, where waiting is
        harmless. On PostgreSQL, always in the thread pool: network round trips must not hold
        up the loop.

        `grouped` (SQLite, on the loop): the use case joins the turn's group commit (_Group),
        in a savepoint; its answer waits for the group's COMMIT, and the commit's failure is
        every member's. A transaction's fixed costs (BEGIN IMMEDIATE, the pool, COMMIT writing
        its pages to the log) are paid once per turn instead of once per write. For use cases
        whose commit tells nothing to this process but through when_durable (the
        orientation)."""
        if self.engine.dialect.name == "sqlite":
            if grouped:
                try:
                    return await self._grouped(use_case)
                except WouldWait:
                    return await anyio.to_thread.run_sync(self._run, use_case)
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
        return await anyio.to_thread.run_sync(self._run, use_case)

    async def _grouped(self, use_case: Callable[[Session], T]) -> T:
        while (group := self._group) is not None and group.members >= GROUP_LIMIT:
            room = asyncio.get_running_loop().create_future()
            group.full.append(room)
            await room
        token = _on_loop.set(True)
        try:
            if group is None:
                group = self._open_group()  # WouldWait: SQLite's write lock is held elsewhere
            group.members += 1
            try:
                with Session(group.connection, join_transaction_mode="create_savepoint") as s:
                    s.info[_GROUP] = group
                    result = use_case(s)
            except BaseException as exc:
                if group.fault is None and not _in_transaction(group.connection):
                    # SQLite ended the transaction on this error (a full disk, an I/O error):
                    # what the group's members wrote is gone, and so is their answer.
                    group.fault = exc
                    if self._group is group:
                        self._group = None
                raise
        finally:
            _on_loop.reset(token)
        answered = asyncio.get_running_loop().create_future()
        group.answered.append(answered)
        await answered  # the group's commit, or its error
        return result

    def _open_group(self) -> _Group:
        lock = _write_locks[self.engine]
        if not lock.acquire(blocking=False):
            raise WouldWait
        try:
            connection = self.engine.connect().execution_options(**{_WRITE: True})
            try:
                connection.begin()  # _sqlite_begin: BEGIN IMMEDIATE, or WouldWait at once
            except BaseException:
                connection.close()
                raise
        except BaseException:
            lock.release()
            raise
        group = self._group = _Group(connection, lock)
        # After the writes that this turn of the loop runs: theirs are the group's.
        asyncio.get_running_loop().call_soon(self._commit, group)
        return group

    def _commit(self, group: _Group) -> None:
        if self._group is group:
            self._group = None
        failed = group.fault  # the transaction is gone: nothing to commit
        if failed is None:
            try:
                assert group.transaction is not None
                group.transaction.commit()
            except Exception as exc:
                failed = exc
        try:
            group.connection.close()  # back to the pool, rolled back if the commit failed
        except Exception as exc:  # the answer is the commit's: the pool drops this connection
            logger.warning("Connexion SQLite non rendue après écriture : %s", type(exc).__name__)
        finally:
            group.lock.release()
        for answered in group.answered:
            if answered.done():  # its request was cancelled
                continue
            if failed is None:
                answered.set_result(None)
            else:
                answered.set_exception(failed)
        for room in group.full:
            if not room.done():
                room.set_result(None)
        if failed is None:
            for callback in group.on_commit:
                try:
                    callback()
                except Exception:
                    logger.exception("Suite d'écriture en échec")

    async def in_background(self, use_case: Callable[[Session], T]) -> T:
        """A background job's write (expiry, reminders, the purge): always in the thread pool,
        SQLite included. A backlog (a service started after days down, ~400,000 past-due
        referrals on the bench's national database) is thousands of batched rows: on the loop
        it would hold every request for as long; in a thread it waits for the writer like any
        thread, and the loop keeps answering between the interpreter's switches."""
        return await anyio.to_thread.run_sync(self._run, use_case)


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
    raw_execute(connection, sql, params)


def raw_execute(connection: Connection, sql: str, params: Any = None) -> Any:
    """Runs `sql` on the driver's own cursor (the hot path's statements, compiled once) and
    returns the cursor. Its errors are wrapped as SQLAlchemy wraps its own (IntegrityError,
    OperationalError…), so that callers and storage_fault tell them apart the same way."""
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params) if params is not None else cursor.execute(sql)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc
    return cursor


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
    return int.from_bytes(
        hashlib.sha256(f"passerelle:{name}".encode()).digest()[:8], "big", signed=True
    )


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
    """Upgrades to the last revision, then checks that the database takes a write. Several
    instances starting at once on an empty database take turns on an advisory lock: the first
    migrates, the others then find nothing to do. StorageUnavailable (in French) when the
    database cannot be reached or written: a read-only file has nothing to migrate and would
    refuse every orientation."""
    try:
        with exclusive(engine, "migrate", wait=True):
            command.upgrade(alembic_config(engine), "head")
    except (DBAPIError, PoolTimeout) as exc:
        reason = storage_fault(exc)
        if reason is None:
            raise
        raise StorageUnavailable(reason) from exc
    require_writable(engine)


@lru_cache(maxsize=1)
def _migrations_head() -> str | None:
    """The last revision this code knows: read once (parsing the scripts took 13 ms a probe)."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def migrations_current(engine: Engine) -> bool:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == _migrations_head()


# --- storage faults --------------------------------------------------------------------------

RETRY_AFTER_SECONDS = 5  # what a 503 asks a client to wait, and how long /readyz remembers a fault
PROBE_EVERY_SECONDS = 1.0
_SQLITE_FAULTS = {  # primary result codes (the extended ones carry them in their low byte)
    sqlite3.SQLITE_FULL: "Le disque de la base de données est plein : rien ne peut être écrit.",
    sqlite3.SQLITE_READONLY: "La base de données est en lecture seule : rien ne peut être écrit.",
    sqlite3.SQLITE_IOERR: "Le disque de la base de données ne répond pas (erreur d'écriture).",
    sqlite3.SQLITE_CANTOPEN: (
        "Le fichier de la base de données ne peut pas être ouvert : son dossier est-il en "
        "lecture seule, ou absent ?"
    ),
    sqlite3.SQLITE_BUSY: "La base de données est occupée par une autre écriture.",
    sqlite3.SQLITE_LOCKED: "La base de données est occupée par une autre écriture.",
}
_UNREACHABLE = "La base de données est injoignable."


class StorageUnavailable(Exception):
    """The database cannot be reached or written right now; the message says why, in French."""


def storage_fault(exc: BaseException) -> str | None:
    """Why `exc` means that the database cannot be reached or written right now (a French
    sentence, for a 503 or the command line), or None when it is anything else (a bug, a
    constraint: not the storage's fault). The one place that tells them apart."""
    if isinstance(exc, StorageUnavailable):
        return str(exc)
    if isinstance(exc, PoolTimeout):
        return "Toutes les connexions à la base de données sont occupées."
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return _SQLITE_FAULTS.get(code & 0xFF) if isinstance(code, int) else None
    # psycopg, read by duck typing: a SQLite deployment never imports it.
    sqlstate: str | None = getattr(orig, "sqlstate", None)
    if sqlstate == "25006":  # read_only_sql_transaction: a standby, or read-only by setting
        return "La base de données est en lecture seule : rien ne peut être écrit."
    if sqlstate is not None and sqlstate.startswith("53"):  # insufficient resources
        return {
            "53100": "Le disque de la base de données est plein : rien ne peut être écrit.",
            "53300": "La base de données n'accepte plus de connexion (toutes sont prises).",
        }.get(sqlstate, "La base de données manque de ressources.")
    if sqlstate is not None and sqlstate.startswith("57P"):  # shutting down, starting up
        return "La base de données redémarre."
    if exc.connection_invalidated or (
        isinstance(exc, OperationalError) and (sqlstate is None or sqlstate.startswith("08"))
    ):
        return _UNREACHABLE  # refused, dropped, timed out: no answer from the server
    return None


def write_probe(engine: Engine) -> str | None:
    """Tries a write that rolls back (the migrations' own row, set to itself): None if the
    database took it, else why not, in French. On a SQLite file, also None only if its disk
    has room for what SQLite may write before its next checkpoint (a full disk takes small
    writes into the log's old room until it must grow). Raises what is not a storage fault."""
    try:
        with Session(engine) as session, writing(session):
            if engine.dialect.name == "postgresql":
                session.execute(text("SET LOCAL statement_timeout = 2000"))
            session.execute(text("UPDATE alembic_version SET version_num = version_num"))
            path = engine.url.database if engine.dialect.name == "sqlite" else None
            if path and path != ":memory:":
                page = session.execute(text("PRAGMA page_size")).scalar_one()
                pages = session.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()
                room = os.statvfs(os.path.dirname(os.path.abspath(path)))
                if room.f_bavail * room.f_frsize < page * max(pages, 100):
                    return _SQLITE_FAULTS[sqlite3.SQLITE_FULL]
            session.rollback()
    except (DBAPIError, PoolTimeout) as exc:
        reason = storage_fault(exc)
        if reason is None:
            raise
        return reason
    return None


class StorageHealth:
    """Whether the database can be written, as /readyz says it: a write probe at most once a
    second, and whatever fault a request met in the last RETRY_AFTER_SECONDS (a disk can take
    the probe's nothing and refuse an orientation)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._probed_at = -math.inf
        self._probed: str | None = None
        self._fault: tuple[float, str] | None = None

    def fault_seen(self, reason: str) -> None:
        self._fault = (time.monotonic(), reason)

    def unwritable(self) -> str | None:
        """Why the database cannot be written now, or None (blocking: call from a thread)."""
        with self._lock:
            if time.monotonic() - self._probed_at >= PROBE_EVERY_SECONDS:
                self._probed = write_probe(self.engine)
                self._probed_at = time.monotonic()
            if self._probed is not None:
                return self._probed
        fault = self._fault
        if fault is not None and time.monotonic() - fault[0] < RETRY_AFTER_SECONDS:
            return fault[1]
        return None


_health: "weakref.WeakKeyDictionary[Engine, StorageHealth]" = weakref.WeakKeyDictionary()
_health_lock = threading.Lock()


def storage_health(engine: Engine) -> StorageHealth:
    """This process's one StorageHealth of `engine`."""
    with _health_lock:
        health = _health.get(engine)
        if health is None:
            health = _health[engine] = StorageHealth(engine)
        return health


def not_ready(engine: Engine) -> str | None:
    """Why the service is not ready (/readyz), in French, or None: the database answers, is
    migrated, and takes a write (StorageHealth: probed at most once a second)."""
    try:
        current = migrations_current(engine)
    except Exception as exc:
        return storage_fault(exc) or _UNREACHABLE
    if not current:
        return "Migrations non appliquées : lancez « passerelle migrate »."
    try:
        return storage_health(engine).unwritable()
    except Exception:
        return "La base de données refuse l'écriture."


def require_writable(engine: Engine) -> None:
    """Raises StorageUnavailable (in French) unless the database can be reached and written:
    at start, before serving."""
    try:
        reason = write_probe(engine)
    except DBAPIError as exc:  # not a storage fault: still not a traceback at start
        raise StorageUnavailable(
            f"La base de données refuse l'écriture ({type(exc).__name__})."
        ) from exc
    if reason is not None:
        raise StorageUnavailable(reason)

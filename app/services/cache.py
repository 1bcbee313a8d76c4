"""In-memory copies of the read-mostly tables (API keys, communes, places), so that a request
reads them without a database round trip.

Every write to such a table bumps its row of `data_version` in the same transaction (`bump`).
A commit in this process marks the copy stale at once; other processes (workers, the command
line) see the new version when `poll` runs, once a second in the serving process. A stale copy
is reloaded by the next reader, in its own thread and short session."""

import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.db import engine_of, when_durable
from app.models.data_version import DataVersion

T = TypeVar("T")


class Cached(Generic[T]):
    """One table's copy in one process, for one database."""

    def __init__(self, engine: Engine, name: str, load: Callable[[Session], T]) -> None:
        self.engine, self.name, self.load = engine, name, load
        self.version: int | None = None
        self.stale = True
        self._marks = 0  # how many times it was marked stale
        self._value: T | None = None
        self._lock = threading.Lock()

    def mark_stale(self) -> None:
        self._marks += 1
        self.stale = True

    def fresh(self) -> T | None:
        """The copy if it is up to date, without touching the database (safe on the loop)."""
        return None if self.stale else self._value

    def put(self, value: T, version: int | None) -> None:
        """A copy read by a caller's own transaction at `version`, for readers that compare
        the version in their transaction before using it (app.notifications.notify)."""
        with self._lock:
            self._value, self.version, self.stale = value, version, False

    def get(self) -> T:
        """The copy, reloaded first if stale: call from a thread, never from the event loop."""
        value = self.fresh()
        if value is not None:
            return value
        with self._lock:
            if not self.stale and self._value is not None:
                return self._value
            marks = self._marks
            with Session(self.engine) as session:
                # The version first: data newer than its version only costs one more reload.
                version = session.exec(
                    select(DataVersion.version).where(col(DataVersion.name) == self.name)
                ).first()
                value = self.load(session)
            self._value, self.version = value, version
            # Marked stale while loading: this copy may predate the change; the next reader
            # loads again.
            self.stale = self._marks != marks
            return value


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables: dict[str, Cached[Any]] = {}


_registries: dict[str, _Registry] = {}
_by_engine: "weakref.WeakKeyDictionary[Engine, _Registry]" = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def _registry(engine: Engine) -> _Registry:
    """One registry per database: engines of one URL (the server's, the command line's in the
    same process) share it, so a commit through either marks the copies stale."""
    found = _by_engine.get(engine)
    if found is None:
        url = engine.url.render_as_string(hide_password=False)
        with _registries_lock:
            found = _by_engine[engine] = _registries.setdefault(url, _Registry())
    return found


def cached(engine: Engine, name: str, load: Callable[[Session], T]) -> Cached[T]:
    """This process's copy of table `name` of the engine's database, made on first use."""
    registry = _registry(engine)
    found = registry.tables.get(name)
    if found is None:
        with registry.lock:
            found = registry.tables.setdefault(name, Cached(engine, name, load))
    return found


def bump(session: Session, name: str) -> None:
    """Says, in the writer's transaction, that table `name` changed."""
    session.exec(
        update(DataVersion)
        .where(col(DataVersion.name) == name)
        .values(version=col(DataVersion.version) + 1)
    )
    session.info.setdefault("bumped", set()).add(name)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    bumped = session.info.pop("bumped", None)
    if bumped:
        engine = engine_of(session)
        when_durable(session, lambda: invalidate(engine, *bumped))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("bumped", None)


def invalidate(engine: Engine, *names: str) -> None:
    """Marks this process's copies stale (all of them when no name is given)."""
    registry = _registry(engine)
    with registry.lock:
        for name, table in registry.tables.items():
            if not names or name in names:
                table.mark_stale()


def poll(engine: Engine) -> None:
    """Marks stale every copy whose table changed in another process since it was loaded, and
    loads the stale copies again, here in the poller's thread: a request then finds them
    fresh instead of loading them itself (on the event loop, for a SQLite write)."""
    with Session(engine) as session:
        versions = {v.name: v.version for v in session.exec(select(DataVersion)).all()}
    registry = _registry(engine)
    with registry.lock:
        for name, table in registry.tables.items():
            if table.version != versions.get(name):
                table.mark_stale()
        tables = list(registry.tables.values())
    for table in tables:
        if table.stale:
            table.get()

"""The reference of `make bench`: a bare FastAPI endpoint that validates a body of the same
shape and size as an orientation and writes two rows in one SQLite transaction (WAL, the same
pragmas as Passerelle), or with REFERENCE_PG (a libpq URL) in one PostgreSQL transaction, one
connection per thread. What Passerelle does beyond that is what the ratio measures.

Run: REFERENCE_DB=/tmp/ref.db uvicorn bench.reference_app:app"""

import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

DB = os.environ.get("REFERENCE_DB", "reference.db")
PG = os.environ.get("REFERENCE_PG")
_local = threading.local()


def _connection() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _local.conn = conn
    return conn


def _pg_connection() -> Any:
    conn = getattr(_local, "pg", None)
    if conn is None:
        conn = _local.pg = psycopg.connect(PG)
    return conn


if PG:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS item (id TEXT PRIMARY KEY, at TEXT, body TEXT)")
        setup.execute(
            "CREATE TABLE IF NOT EXISTS log (id SERIAL PRIMARY KEY, item_id TEXT, at TEXT)"
        )
else:
    with sqlite3.connect(DB) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS item (id TEXT PRIMARY KEY, at TEXT, body TEXT)")
        setup.execute(
            "CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, item_id TEXT, at TEXT)"
        )


class Assessment(BaseModel):
    profile: str


class Procedure(BaseModel):
    theme: str
    urgent: bool = False


class Person(BaseModel):
    commune: str
    consent: bool = False


class Body(BaseModel):
    assessment: Assessment
    procedure: Procedure
    person: Person


app = FastAPI()


@app.post("/v1/orientations", status_code=201)
def create(body: Body) -> dict[str, str]:
    item_id, now = uuid.uuid4().hex, datetime.now(UTC).isoformat()
    if PG:
        with _pg_connection().transaction() as tx:
            tx.connection.execute(
                "INSERT INTO item VALUES (%s, %s, %s)", (item_id, now, body.model_dump_json())
            )
            tx.connection.execute("INSERT INTO log (item_id, at) VALUES (%s, %s)", (item_id, now))
        return {"id": item_id, "created_at": now}
    conn = _connection()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO item VALUES (?, ?, ?)", (item_id, now, body.model_dump_json()))
        conn.execute("INSERT INTO log (item_id, at) VALUES (?, ?)", (item_id, now))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"id": item_id, "created_at": now}

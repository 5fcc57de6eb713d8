"""What every service shares: SQLite access, the error body, /health, and the main."""

import argparse
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import uvicorn
from fastapi import Depends, FastAPI, Response
from pydantic import BaseModel

from services.auth import MissingServiceToken, require_service_token, token_from_env
from services.errors import ServiceFailure, install_error_bodies
from services.faults import install_faults
from telemetry.services import observe_service

BUSY_TIMEOUT_SECONDS = 30.0


class Database:
    """One SQLite file, one connection per thread (FastAPI runs sync endpoints on its
    threadpool; a sqlite3 connection must stay on the thread that made it). Connections live
    as long as their thread: opening one per request cost ~1.5 ms a write here, most of it the
    checkpoint SQLite runs when the last connection to a WAL file closes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            self._local.conn = conn
        return conn

    def init(self, schema: str) -> None:
        """Turn on WAL (persistent in the file) and create the tables if missing."""
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(schema)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Reads outside a transaction: each statement sees the last committed state."""
        yield self._connect()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A transaction that holds the write lock from its first statement, so a
        read-then-update inside it cannot race another request; rolled back on error."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # the connection outlives the request: leave it clean
                conn.execute("ROLLBACK")
            raise


def fingerprint(request: BaseModel) -> str:
    """Hash of the canonical JSON of a validated request: same meaning, same hash."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def row_by_key(
    conn: sqlite3.Connection, table: str, key_column: str, key: str
) -> sqlite3.Row | None:
    """The row of `table` whose `key_column` is `key` (names are the service's constants)."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT * FROM {table} WHERE {key_column} = ?", (key,)
    ).fetchone()
    return row


def record_once(
    conn: sqlite3.Connection,
    table: str,
    key_column: str,
    values: Mapping[str, object],
    request_hash: str,
    response: Response,
) -> sqlite3.Row:
    """Insert `values` (plus `request_hash`) unless a row has their key: the first request is
    201, the same request again answers the first row with 200 and changes nothing, another
    request under the same key is 409 `idempotency_key_reused`. Call it inside `db.write()`."""
    key = str(values[key_column])
    row = row_by_key(conn, table, key_column, key)
    if row is None:
        columns = [*values, "request_hash"]
        conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            (*values.values(), request_hash),
        )
        row = row_by_key(conn, table, key_column, key)
        assert row is not None
    elif row["request_hash"] != request_hash:
        raise idempotency_key_reused(key)
    else:
        response.status_code = 200
    return row


def idempotency_key_reused(key: str) -> ServiceFailure:
    return ServiceFailure(
        409, "idempotency_key_reused", f"{key!r} was already used for a different request"
    )


class Health(BaseModel):
    status: str
    service: str


def create_service_app(name: str) -> FastAPI:
    """A FastAPI app with ServiceError bodies for every failure, a GET /health, and fault
    injection under /admin/fault (services.faults)."""
    # No token, no service (services.auth): every route but /health needs the bearer token.
    app = FastAPI(
        title=f"{name} service", dependencies=[Depends(require_service_token(token_from_env()))]
    )
    install_error_bodies(app)

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok", service=name)

    install_faults(app, name)
    return app


def serve(make_app: Callable[[str], FastAPI], argv: Sequence[str]) -> None:
    """Main of every service: `--port P --db FILE [--host H]`, then run uvicorn."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite file, created if missing")
    args = parser.parse_args(argv)
    try:
        token_from_env()  # before anything is created: no token, no service
    except MissingServiceToken as err:
        parser.exit(2, f"refusing to start: {err}\n")
    app = make_app(args.db)
    tracer_provider = observe_service(app)  # JSON logs; spans if CHECKOUT_TRACING is on
    try:
        # log_config=None: uvicorn's own lines go through the JSON handler too.
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", log_config=None)
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # send the last spans

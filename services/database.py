"""A service's SQLite store: per-thread connections, transactions, rows by key, timestamps."""

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

BUSY_TIMEOUT_SECONDS = 30.0


class Database:
    """One SQLite file, one connection per thread (FastAPI runs sync endpoints on its
    threadpool; a sqlite3 connection must stay on the thread that made it). Connections live
    as long as their thread: opening one per request is slow, mostly for the checkpoint SQLite
    runs when the last connection to a WAL file closes."""

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


def row_by_key(
    conn: sqlite3.Connection, table: str, key_column: str, key: str
) -> sqlite3.Row | None:
    """The row of `table` whose `key_column` is `key` (names are the service's constants)."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT * FROM {table} WHERE {key_column} = ?", (key,)
    ).fetchone()
    return row


def iso_utc(moment: datetime) -> str:
    """`moment` as rows record times: UTC, ISO 8601, to the millisecond. One format for every
    row, so that times compare as text (`created_at < ?`). `moment` must be aware."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def now_iso() -> str:
    """The time a row records: UTC, ISO 8601, to the millisecond."""
    return iso_utc(datetime.now(UTC))

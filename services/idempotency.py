"""Idempotent writes: a request's fingerprint, the record written once under its key and
answered again to a repeat, and the 409 for a key reused by a different request."""

import hashlib
import json
import sqlite3
from collections.abc import Mapping

from fastapi import Response
from pydantic import BaseModel

from services.database import row_by_key
from services.errors import ServiceFailure


def fingerprint(request: BaseModel) -> str:
    """Hash of the canonical JSON of a validated request: same meaning, same hash."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key_reused(key: str) -> ServiceFailure:
    return ServiceFailure(
        409, "idempotency_key_reused", f"{key!r} was already used for a different request"
    )


def record_once(
    conn: sqlite3.Connection,
    table: str,
    key_column: str,
    values: Mapping[str, object],
    request_hash: str,
    response: Response,
) -> sqlite3.Row:
    """Insert `values` (plus `request_hash`) unless a row has their key: the first request gets
    the endpoint's status (201), the same request again answers the first row with 200 and
    changes nothing, another request under the same key is 409 `idempotency_key_reused`. Call
    it inside `db.write()`."""
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

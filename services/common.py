"""What every service shares: SQLite access, the error body, /health, and the main."""

import argparse
import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence

import uvicorn
from fastapi import Depends, FastAPI, Response
from pydantic import BaseModel

from services.auth import MissingServiceToken, require_service_token, token_from_env
from services.database import row_by_key
from services.errors import ServiceFailure, install_error_bodies
from services.faults import install_faults
from telemetry.services import observe_service


def fingerprint(request: BaseModel) -> str:
    """Hash of the canonical JSON of a validated request: same meaning, same hash."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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

"""Analytics service: order events counted per type, each event id counted once."""

import sqlite3
from datetime import UTC, datetime

from fastapi import FastAPI, Response

from models.analytics import EventCounts, RecordedEvent, RecordEvent
from services.common import Database, create_service_app, fingerprint, idempotency_key_reused

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id     TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    total_cents  INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    recorded_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type ON events (event_type);
"""


def _event(row: sqlite3.Row) -> RecordedEvent:
    return RecordedEvent(
        event_id=row["event_id"],
        event_type=row["event_type"],
        order_id=row["order_id"],
        total_cents=row["total_cents"],
        currency=row["currency"],
        recorded_at=row["recorded_at"],
    )


def _get(conn: sqlite3.Connection, event_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM events WHERE event_id = ?", (event_id,)
    ).fetchone()
    return row


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("analytics")

    @app.post("/events", status_code=201)
    def record_event(body: RecordEvent, response: Response) -> RecordedEvent:
        digest = fingerprint(body)
        with db.write() as conn:
            row = _get(conn, body.event_id)
            if row is None:
                conn.execute(
                    "INSERT INTO events (event_id, request_hash, event_type, order_id,"
                    " total_cents, currency, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.event_id,
                        digest,
                        body.event_type,
                        body.order_id,
                        body.total_cents,
                        body.currency,
                        datetime.now(UTC).isoformat(timespec="milliseconds"),
                    ),
                )
                row = _get(conn, body.event_id)
                assert row is not None
            elif row["request_hash"] != digest:
                raise idempotency_key_reused(body.event_id)
            else:
                response.status_code = 200  # counted already
            return _event(row)

    @app.get("/events")
    def list_events(
        event_type: str | None = None, order_id: str | None = None
    ) -> list[RecordedEvent]:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM events WHERE (? IS NULL OR event_type = ?)"
                " AND (? IS NULL OR order_id = ?) ORDER BY rowid",
                (event_type, event_type, order_id, order_id),
            ).fetchall()
        return [_event(row) for row in rows]

    @app.get("/counts")
    def counts() -> EventCounts:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT event_type, COUNT(*) AS n FROM events GROUP BY event_type ORDER BY 1"
            ).fetchall()
        per_type = {row["event_type"]: row["n"] for row in rows}
        return EventCounts(counts=per_type, total=sum(per_type.values()))

    return app

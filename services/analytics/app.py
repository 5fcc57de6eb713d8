"""Analytics service: order events counted per type, each event id counted once."""

import sqlite3

from fastapi import FastAPI, Response

from models.analytics import EventCounts, RecordedEvent, RecordEvent
from services.database import Database, now_iso
from services.idempotency import fingerprint, record_once
from services.service_app import create_service_app

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


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("analytics")

    @app.post("/events", status_code=201)
    def record_event(body: RecordEvent, response: Response) -> RecordedEvent:
        values = {
            "event_id": body.event_id,
            "event_type": body.event_type,
            "order_id": body.order_id,
            "total_cents": body.total_cents,
            "currency": body.currency,
            "recorded_at": now_iso(),
        }
        with db.write() as conn:  # a repeat answers the event already counted
            row = record_once(conn, "events", "event_id", values, fingerprint(body), response)
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

"""Loyalty service: a points ledger, one entry per idempotency key (the event's id)."""

import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import CustomerId
from models.loyalty import AddPoints, LedgerEntry, LoyaltyBalance
from services.database import Database, now_iso
from services.idempotency import fingerprint, record_once
from services.service_app import create_service_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    entry_id     TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    points       INTEGER NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_customer ON ledger (customer_id);
"""

PathCustomerId = Annotated[CustomerId, Path()]


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row["entry_id"],
        customer_id=row["customer_id"],
        order_id=row["order_id"],
        points=row["points"],
        created_at=row["created_at"],
    )


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("loyalty")

    @app.post("/ledger", status_code=201)
    def add_points(body: AddPoints, response: Response) -> LedgerEntry:
        values = {
            "entry_id": body.entry_id,
            "customer_id": body.customer_id,
            "order_id": body.order_id,
            "points": body.points,
            "created_at": now_iso(),
        }
        with db.write() as conn:  # a repeat answers the entry already booked
            row = record_once(conn, "ledger", "entry_id", values, fingerprint(body), response)
            return _entry(row)

    @app.get("/ledger")
    def list_entries(customer_id: str | None = None) -> list[LedgerEntry]:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM ledger WHERE ? IS NULL OR customer_id = ? ORDER BY rowid",
                (customer_id, customer_id),
            ).fetchall()
        return [_entry(row) for row in rows]

    @app.get("/customers/{customer_id}")
    def balance(customer_id: PathCustomerId) -> LoyaltyBalance:
        with db.read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(points), 0) AS points, COUNT(*) AS n FROM ledger"
                " WHERE customer_id = ?",
                (customer_id,),
            ).fetchone()
        return LoyaltyBalance(customer_id=customer_id, points=row["points"], entries=row["n"])

    return app

"""Warehouse service: shipments, one per order, requested by the order's confirmation event.

A repeat of the same request answers the first shipment; another request for an order that
already has a shipment, or an event that already shipped another order, is refused (409
`idempotency_key_reused`).
"""

import json
import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import OrderId
from models.inventory import StockLine
from models.warehouse import CreateShipment, Shipment, ShipmentStatus
from services.database import Database, now_iso, row_by_key
from services.errors import ServiceFailure
from services.idempotency import fingerprint, idempotency_key_reused, record_once
from services.service_app import create_service_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    order_id     TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    lines        TEXT NOT NULL,  -- JSON list of StockLine
    status       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
"""

PathOrderId = Annotated[OrderId, Path()]


def _shipment(row: sqlite3.Row) -> Shipment:
    return Shipment(
        order_id=row["order_id"],
        event_id=row["event_id"],
        customer_id=row["customer_id"],
        lines=[StockLine.model_validate(line) for line in json.loads(row["lines"])],
        status=ShipmentStatus(row["status"]),
        created_at=row["created_at"],
    )


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("warehouse")

    @app.post("/shipments", status_code=201)
    def create_shipment(body: CreateShipment, response: Response) -> Shipment:
        values = {
            "order_id": body.order_id,
            "event_id": body.event_id,
            "customer_id": body.customer_id,
            "lines": json.dumps([line.model_dump() for line in body.lines]),
            "status": ShipmentStatus.REQUESTED,
            "created_at": now_iso(),
        }
        with db.write() as conn:  # one shipment per order; a repeat answers it
            if row_by_key(conn, "shipments", "order_id", body.order_id) is None and row_by_key(
                conn, "shipments", "event_id", body.event_id
            ):
                raise idempotency_key_reused(body.event_id)  # that event shipped another order
            row = record_once(conn, "shipments", "order_id", values, fingerprint(body), response)
            return _shipment(row)

    @app.get("/shipments/{order_id}")
    def get_shipment(order_id: PathOrderId) -> Shipment:
        with db.read() as conn:
            row = row_by_key(conn, "shipments", "order_id", order_id)
        if row is None:
            raise ServiceFailure(404, "shipment_not_found", f"no shipment for {order_id!r}")
        return _shipment(row)

    @app.get("/shipments")
    def list_shipments(order_id: str | None = None) -> list[Shipment]:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM shipments WHERE ? IS NULL OR order_id = ? ORDER BY rowid",
                (order_id, order_id),
            ).fetchall()
        return [_shipment(row) for row in rows]

    return app

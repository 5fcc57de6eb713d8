"""Inventory service: stock per SKU, and reservations that hold it for an order.

Stock is conserved: available + reserved + committed per SKU only changes via PUT /stock.
"""

import json
import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import DEFAULT_LIST_LIMIT, IdempotencyKey, Sku
from models.inventory import (
    OutOfStock,
    Reservation,
    ReservationStatus,
    ReserveStock,
    SetStock,
    StockLevel,
    StockLine,
)
from services.database import Database, now_iso, row_by_key
from services.errors import ServiceFailure
from services.idempotency import fingerprint, idempotency_key_reused
from services.listing import CreatedBefore, Limit, OrderIds, list_rows
from services.service_app import create_service_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku       TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved  INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    committed INTEGER NOT NULL DEFAULT 0 CHECK (committed >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    request_hash   TEXT,  -- NULL for a tombstone: released before it was made
    order_id       TEXT,
    lines          TEXT NOT NULL,  -- JSON list of StockLine
    status         TEXT NOT NULL
        CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'REJECTED')),
    rejection      TEXT,  -- JSON OutOfStock of a REJECTED one, to answer a repeat alike
    created_at     TEXT NOT NULL  -- when the row was written (services.database.now_iso)
);
-- What the reconciler asks: the reservations of a status made before a time, and of orders.
CREATE INDEX IF NOT EXISTS reservations_by_status ON reservations (status, created_at);
CREATE INDEX IF NOT EXISTS reservations_by_order ON reservations (order_id);
"""

CATALOGUE = [
    ("MUG-BLUE", "Blue mug", 100),
    ("TEE-M", "T-shirt, size M", 100),
    ("POSTER-A2", "Poster A2", 50),
    ("LIMITED-PRINT", "Limited print", 3),
    ("VINYL-SOLDOUT", "Sold-out vinyl", 0),
]

PathSku = Annotated[Sku, Path()]
PathReservationId = Annotated[IdempotencyKey, Path()]


def _reservation(row: sqlite3.Row) -> Reservation:
    return Reservation(
        reservation_id=row["reservation_id"],
        order_id=row["order_id"],
        lines=[StockLine.model_validate(line) for line in json.loads(row["lines"])],
        status=ReservationStatus(row["status"]),
        created_at=row["created_at"],
    )


def _out_of_stock(row: sqlite3.Row) -> ServiceFailure:
    """The 409 of a REJECTED reservation, rebuilt from what was stored at the time."""
    short = OutOfStock.model_validate_json(row["rejection"])
    lines = json.loads(row["lines"])
    index = next(i for i, line in enumerate(lines) if line["sku"] == short.sku)
    return ServiceFailure(
        409,
        "out_of_stock",
        f"{short.sku}: requested {short.requested}, available {short.available}",
        f"lines.{index}.sku",
    )


def _set_status(conn: sqlite3.Connection, reservation_id: str, status: ReservationStatus) -> None:
    conn.execute(
        "UPDATE reservations SET status = ? WHERE reservation_id = ?",
        (status, reservation_id),
    )


def _reserve(conn: sqlite3.Connection, body: ReserveStock) -> OutOfStock | None:
    """Take every line from available, or none: the first line short is returned."""
    for index, line in enumerate(body.lines):
        if row_by_key(conn, "stock", "sku", line.sku) is None:
            raise ServiceFailure(
                422, "unknown_sku", f"unknown SKU {line.sku!r}", f"lines.{index}.sku"
            )
    conn.execute("SAVEPOINT reserve")
    for line in body.lines:
        # Conditional: never takes available below zero, whatever runs concurrently.
        taken = conn.execute(
            "UPDATE stock SET available = available - ?, reserved = reserved + ?"
            " WHERE sku = ? AND available >= ?",
            (line.quantity, line.quantity, line.sku, line.quantity),
        ).rowcount
        if taken == 0:
            stock = row_by_key(conn, "stock", "sku", line.sku)
            assert stock is not None
            conn.execute("ROLLBACK TO reserve")
            return OutOfStock(sku=line.sku, requested=line.quantity, available=stock["available"])
    conn.execute("RELEASE reserve")
    return None


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    with db.write() as conn:
        # Seed only a new store: a restart must not refill what was sold.
        if conn.execute("SELECT COUNT(*) FROM stock").fetchone()[0] == 0:
            conn.executemany("INSERT INTO stock (sku, name, available) VALUES (?, ?, ?)", CATALOGUE)
    app = create_service_app("inventory")

    @app.post("/reservations", status_code=201)
    def reserve(body: ReserveStock, response: Response) -> Reservation:
        digest = fingerprint(body)
        with db.write() as conn:
            row = row_by_key(conn, "reservations", "reservation_id", body.reservation_id)
            if row is None:
                short = _reserve(conn, body)
                conn.execute(
                    "INSERT INTO reservations (reservation_id, request_hash, order_id, lines,"
                    " status, rejection, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.reservation_id,
                        digest,
                        body.order_id,
                        json.dumps([line.model_dump() for line in body.lines]),
                        ReservationStatus.REJECTED if short else ReservationStatus.RESERVED,
                        short.model_dump_json() if short else None,
                        now_iso(),
                    ),
                )
                row = row_by_key(conn, "reservations", "reservation_id", body.reservation_id)
                assert row is not None
            elif row["request_hash"] is None:
                # Released before it arrived: this late request must hold nothing.
                response.status_code = 200
            elif row["request_hash"] != digest:
                raise idempotency_key_reused(body.reservation_id)
        # Raised after the commit, so that the REJECTED row is kept for repeats.
        if row["status"] == ReservationStatus.REJECTED:
            raise _out_of_stock(row)
        return _reservation(row)

    @app.post("/reservations/{reservation_id}/release")
    def release(reservation_id: PathReservationId) -> Reservation:
        with db.write() as conn:
            row = row_by_key(conn, "reservations", "reservation_id", reservation_id)
            if row is None:
                # A tombstone, so that a reserve still in flight takes nothing.
                conn.execute(
                    "INSERT INTO reservations (reservation_id, request_hash, order_id, lines,"
                    " status, created_at) VALUES (?, NULL, NULL, '[]', ?, ?)",
                    (reservation_id, ReservationStatus.RELEASED, now_iso()),
                )
            elif row["status"] == ReservationStatus.COMMITTED:
                raise ServiceFailure(
                    409, "reservation_committed", f"reservation {reservation_id!r} is committed"
                )
            elif row["status"] == ReservationStatus.RESERVED:
                for line in json.loads(row["lines"]):
                    conn.execute(
                        "UPDATE stock SET available = available + ?, reserved = reserved - ?"
                        " WHERE sku = ?",
                        (line["quantity"], line["quantity"], line["sku"]),
                    )
                _set_status(conn, reservation_id, ReservationStatus.RELEASED)
            # RELEASED or REJECTED: holds nothing, nothing to give back.
            row = row_by_key(conn, "reservations", "reservation_id", reservation_id)
            assert row is not None
            return _reservation(row)

    @app.post("/reservations/{reservation_id}/commit")
    def commit(reservation_id: PathReservationId) -> Reservation:
        with db.write() as conn:
            row = row_by_key(conn, "reservations", "reservation_id", reservation_id)
            if row is None:
                raise ServiceFailure(
                    404,
                    "reservation_not_found",
                    f"no reservation {reservation_id!r}",
                    "reservation_id",
                )
            if row["status"] in (ReservationStatus.RELEASED, ReservationStatus.REJECTED):
                raise ServiceFailure(
                    409,
                    "reservation_released",
                    f"reservation {reservation_id!r} is {row['status']} and holds no stock",
                )
            if row["status"] == ReservationStatus.RESERVED:
                for line in json.loads(row["lines"]):
                    conn.execute(
                        "UPDATE stock SET reserved = reserved - ?, committed = committed + ?"
                        " WHERE sku = ?",
                        (line["quantity"], line["quantity"], line["sku"]),
                    )
                _set_status(conn, reservation_id, ReservationStatus.COMMITTED)
            row = row_by_key(conn, "reservations", "reservation_id", reservation_id)
            assert row is not None
            return _reservation(row)

    @app.get("/reservations/{reservation_id}")
    def get_reservation(reservation_id: PathReservationId) -> Reservation:
        with db.read() as conn:
            row = row_by_key(conn, "reservations", "reservation_id", reservation_id)
        if row is None:
            raise ServiceFailure(
                404, "reservation_not_found", f"no reservation {reservation_id!r}", "reservation_id"
            )
        return _reservation(row)

    @app.get("/reservations")
    def list_reservations(
        status: ReservationStatus | None = None,
        order_id: OrderIds = None,
        created_before: CreatedBefore = None,
        limit: Limit = DEFAULT_LIST_LIMIT,
    ) -> list[Reservation]:
        """The reservations (of `status`, of any of the orders `order_id` names, made before
        `created_before`, if given), oldest first."""
        with db.read() as conn:
            matches = {"order_id": order_id, "status": status}
            rows = list_rows(conn, "reservations", matches, created_before, limit)
        return [_reservation(row) for row in rows]

    @app.get("/stock")
    def list_stock() -> list[StockLevel]:
        with db.read() as conn:
            rows = conn.execute("SELECT * FROM stock ORDER BY sku").fetchall()
        return [StockLevel.model_validate(dict(row)) for row in rows]

    @app.get("/stock/{sku}")
    def get_stock(sku: PathSku) -> StockLevel:
        with db.read() as conn:
            row = row_by_key(conn, "stock", "sku", sku)
        if row is None:
            raise ServiceFailure(404, "unknown_sku", f"unknown SKU {sku!r}", "sku")
        return StockLevel.model_validate(dict(row))

    @app.put("/stock/{sku}")
    def set_stock(sku: PathSku, body: SetStock) -> StockLevel:
        with db.write() as conn:
            conn.execute(
                "INSERT INTO stock (sku, name, available) VALUES (?, ?, ?)"
                " ON CONFLICT (sku) DO UPDATE SET name = excluded.name,"
                " available = excluded.available",
                (sku, body.name, body.available),
            )
            row = row_by_key(conn, "stock", "sku", sku)
        assert row is not None
        return StockLevel.model_validate(dict(row))

    return app

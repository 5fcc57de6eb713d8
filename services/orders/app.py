"""Orders service: the record that says whether a customer's order exists, and what it costs.

The order is priced here, from the shop's prices (services.orders.pricing), in the same
transaction that writes it: the price stored on the order is the price charged.
"""

import json
import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import DEFAULT_LIST_LIMIT, OrderId, Sku
from models.orders import (
    CancelOrder,
    CreateOrder,
    Order,
    OrderLine,
    OrderStatus,
    SetPrices,
    SkuPrices,
)
from services.database import Database, now_iso, row_by_key
from services.errors import ServiceFailure
from services.idempotency import fingerprint, idempotency_key_reused
from services.listing import CreatedBefore, Limit, list_rows
from services.orders import pricing
from services.service_app import create_service_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id      TEXT PRIMARY KEY,
    request_hash  TEXT,  -- NULL for a tombstone: cancelled before it was created
    customer_id   TEXT NOT NULL,
    currency      TEXT NOT NULL,
    lines         TEXT NOT NULL,  -- JSON list of OrderLine, priced when the order was made
    total_cents   INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    cancel_reason TEXT,
    created_at    TEXT NOT NULL  -- when the row was written (services.database.now_iso)
);
-- What the reconciler asks: the orders of a status opened before a time (services.listing).
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at);
"""

PathOrderId = Annotated[OrderId, Path()]
PathSku = Annotated[Sku, Path()]


def _order(row: sqlite3.Row) -> Order:
    return Order(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        currency=row["currency"],
        lines=[OrderLine.model_validate(line) for line in json.loads(row["lines"])],
        total_cents=row["total_cents"],
        status=OrderStatus(row["status"]),
        cancel_reason=row["cancel_reason"],
        created_at=row["created_at"],
    )


def _not_found(order_id: str) -> ServiceFailure:
    return ServiceFailure(404, "order_not_found", f"no order {order_id!r}", "order_id")


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA + pricing.SCHEMA)
    with db.write() as conn:
        pricing.seed_prices(conn)
    app = create_service_app("orders")

    @app.post("/orders", status_code=201)
    def create_order(body: CreateOrder, response: Response) -> Order:
        digest = fingerprint(body)
        with db.write() as conn:
            row = row_by_key(conn, "orders", "order_id", body.order_id)
            if row is None:
                # A refusal raised here rolls the transaction back: nothing is written.
                lines, total = pricing.price_order(conn, body)
                conn.execute(
                    "INSERT INTO orders (order_id, request_hash, customer_id, currency, lines,"
                    " total_cents, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.order_id,
                        digest,
                        body.customer_id,
                        body.currency,
                        json.dumps([line.model_dump() for line in lines]),
                        total,
                        OrderStatus.PENDING,
                        now_iso(),
                    ),
                )
                row = row_by_key(conn, "orders", "order_id", body.order_id)
                assert row is not None
            elif row["request_hash"] is None:
                # Cancelled before it arrived: the late create must not bring it back to life.
                response.status_code = 200
            elif row["request_hash"] != digest:
                raise idempotency_key_reused(body.order_id)
            # A repeat answers the order as first priced, whatever the prices are now.
            return _order(row)

    @app.post("/orders/{order_id}/confirm")
    def confirm_order(order_id: PathOrderId) -> Order:
        with db.write() as conn:
            row = row_by_key(conn, "orders", "order_id", order_id)
            if row is None:
                raise _not_found(order_id)
            if row["status"] == OrderStatus.CANCELLED:
                raise ServiceFailure(409, "order_cancelled", f"order {order_id!r} is cancelled")
            if row["status"] == OrderStatus.PENDING:
                conn.execute(
                    "UPDATE orders SET status = ? WHERE order_id = ?",
                    (OrderStatus.CONFIRMED, order_id),
                )
            row = row_by_key(conn, "orders", "order_id", order_id)
            assert row is not None
            return _order(row)

    @app.post("/orders/{order_id}/cancel")
    def cancel_order(order_id: PathOrderId, body: CancelOrder) -> Order:
        with db.write() as conn:
            row = row_by_key(conn, "orders", "order_id", order_id)
            if row is None:
                # A tombstone, so that a create still in flight finds the order cancelled.
                conn.execute(
                    "INSERT INTO orders (order_id, request_hash, customer_id, currency, lines,"
                    " total_cents, status, cancel_reason, created_at)"
                    " VALUES (?, NULL, '', 'XXX', '[]', 0, ?, ?, ?)",
                    (order_id, OrderStatus.CANCELLED, body.reason, now_iso()),
                )
            elif row["status"] == OrderStatus.CONFIRMED:
                raise ServiceFailure(409, "order_confirmed", f"order {order_id!r} is confirmed")
            elif row["status"] == OrderStatus.PENDING:
                conn.execute(
                    "UPDATE orders SET status = ?, cancel_reason = ? WHERE order_id = ?",
                    (OrderStatus.CANCELLED, body.reason, order_id),
                )
            # Already CANCELLED: a repeat, the first reason stands.
            row = row_by_key(conn, "orders", "order_id", order_id)
            assert row is not None
            return _order(row)

    @app.get("/orders/{order_id}")
    def get_order(order_id: PathOrderId) -> Order:
        with db.read() as conn:
            row = row_by_key(conn, "orders", "order_id", order_id)
        if row is None:
            raise _not_found(order_id)
        return _order(row)

    @app.get("/orders")
    def list_orders(
        status: OrderStatus | None = None,
        created_before: CreatedBefore = None,
        limit: Limit = DEFAULT_LIST_LIMIT,
    ) -> list[Order]:
        """The orders (of `status`, opened before `created_before`, if given), oldest first."""
        with db.read() as conn:
            rows = list_rows(conn, "orders", {"status": status}, created_before, limit)
        return [_order(row) for row in rows]

    @app.get("/prices")
    def list_prices() -> list[SkuPrices]:
        with db.read() as conn:
            return pricing.all_prices(conn)

    @app.get("/prices/{sku}")
    def get_prices(sku: PathSku) -> SkuPrices:
        with db.read() as conn:
            prices = pricing.prices_of(conn, sku)
        if prices is None:
            raise ServiceFailure(404, "unknown_sku", f"the shop does not sell {sku!r}", "sku")
        return prices

    @app.put("/prices/{sku}")
    def set_prices(sku: PathSku, body: SetPrices) -> SkuPrices:
        """Admin: the SKU's unit prices, one per currency the shop sells in. Orders already
        made keep the prices they were made with."""
        pricing.check_sold_currencies(body.prices)
        with db.write() as conn:
            pricing.set_prices(conn, sku, body.prices)
            prices = pricing.prices_of(conn, sku)
        assert prices is not None
        return prices

    return app

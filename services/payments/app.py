"""Payments service: charges against a card, and their refunds.

Only the last four digits of a card are ever stored.
"""

import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path

from models.common import IdempotencyKey, OrderId
from models.payments import (
    CARD_DECLINED,
    CARD_FLAKY,
    Charge,
    ChargeRequest,
    ChargeStatus,
    RefundRequest,
)
from services.database import Database, row_by_key
from services.errors import ServiceFailure
from services.idempotency import fingerprint, idempotency_key_reused
from services.service_app import create_service_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    charge_id     TEXT PRIMARY KEY,
    request_hash  TEXT,  -- NULL for a tombstone: refunded before the charge arrived
    order_id      TEXT,
    amount_cents  INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    card_last4    TEXT NOT NULL,
    status        TEXT NOT NULL
        CHECK (status IN ('SUCCEEDED', 'REFUNDED', 'DECLINED', 'VOIDED')),
    refund_reason TEXT
);
-- Attempts per charge_id of the flaky test card, so its failures survive a restart.
CREATE TABLE IF NOT EXISTS flaky_attempts (
    charge_id TEXT PRIMARY KEY,
    attempts  INTEGER NOT NULL
);
"""

PathChargeId = Annotated[IdempotencyKey, Path()]


def _charge(row: sqlite3.Row) -> Charge:
    return Charge(
        charge_id=row["charge_id"],
        order_id=row["order_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        card_last4=row["card_last4"],
        status=ChargeStatus(row["status"]),
        refund_reason=row["refund_reason"],
    )


def _request_hash(body: ChargeRequest) -> str:
    # Not a hash of the full card number: with the other fields stored in clear, a hash of
    # the card is brute-forced in seconds. The last four and the length tell cards apart.
    card = f"{len(body.card_number)}:{body.card_number[-4:]}"
    return fingerprint(body.model_copy(update={"card_number": card}))


def _flaky_attempt(conn: sqlite3.Connection, charge_id: str) -> int:
    """Count one more attempt of the flaky card for this charge; return the count."""
    conn.execute(
        "INSERT INTO flaky_attempts (charge_id, attempts) VALUES (?, 1)"
        " ON CONFLICT (charge_id) DO UPDATE SET attempts = attempts + 1",
        (charge_id,),
    )
    count: int = conn.execute(
        "SELECT attempts FROM flaky_attempts WHERE charge_id = ?", (charge_id,)
    ).fetchone()[0]
    return count


def _declined() -> ServiceFailure:
    return ServiceFailure(402, "card_declined", "the card was declined", "card_number")


def _voided(charge_id: str) -> ServiceFailure:
    return ServiceFailure(
        409, "charge_voided", f"charge {charge_id!r} was refunded before it arrived; not charged"
    )


def create_app(db_path: str, flaky_failures: int = 2) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("payments")

    @app.post("/charges", status_code=201)
    def charge(body: ChargeRequest) -> Charge:
        digest = _request_hash(body)
        unavailable = False
        with db.write() as conn:
            row = row_by_key(conn, "charges", "charge_id", body.charge_id)
            if row is not None:
                if row["request_hash"] is None:
                    raise _voided(body.charge_id)
                if row["request_hash"] != digest:
                    raise idempotency_key_reused(body.charge_id)
            elif body.card_number == CARD_FLAKY:
                unavailable = _flaky_attempt(conn, body.charge_id) <= flaky_failures
            if row is None and not unavailable:
                declined = body.card_number == CARD_DECLINED
                conn.execute(
                    "INSERT INTO charges (charge_id, request_hash, order_id, amount_cents,"
                    " currency, card_last4, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.charge_id,
                        digest,
                        body.order_id,
                        body.amount_cents,
                        body.currency,
                        body.card_number[-4:],
                        ChargeStatus.DECLINED if declined else ChargeStatus.SUCCEEDED,
                    ),
                )
                row = row_by_key(conn, "charges", "charge_id", body.charge_id)
        # Raised after the commit, so that the attempt count and a DECLINED row are kept.
        if unavailable:
            raise ServiceFailure(503, "payment_unavailable", "card network unavailable, retry")
        assert row is not None
        if row["status"] == ChargeStatus.DECLINED:
            raise _declined()
        return _charge(row)

    @app.post("/charges/{charge_id}/refund")
    def refund(charge_id: PathChargeId, body: RefundRequest) -> Charge:
        with db.write() as conn:
            row = row_by_key(conn, "charges", "charge_id", charge_id)
            if row is None:
                # A tombstone, so that a charge still in flight is refused, not orphaned.
                conn.execute(
                    "INSERT INTO charges (charge_id, request_hash, order_id, amount_cents,"
                    " currency, card_last4, status, refund_reason)"
                    " VALUES (?, NULL, NULL, 0, 'XXX', '', ?, ?)",
                    (charge_id, ChargeStatus.VOIDED, body.reason),
                )
            elif row["status"] == ChargeStatus.SUCCEEDED:
                conn.execute(
                    "UPDATE charges SET status = ?, refund_reason = ? WHERE charge_id = ?",
                    (ChargeStatus.REFUNDED, body.reason, charge_id),
                )
            # REFUNDED or VOIDED: a repeat, the first reason stands. DECLINED: nothing to give.
            row = row_by_key(conn, "charges", "charge_id", charge_id)
            assert row is not None
            return _charge(row)

    @app.get("/charges/{charge_id}")
    def get_charge(charge_id: PathChargeId) -> Charge:
        with db.read() as conn:
            row = row_by_key(conn, "charges", "charge_id", charge_id)
        if row is None:
            raise ServiceFailure(404, "charge_not_found", f"no charge {charge_id!r}", "charge_id")
        return _charge(row)

    @app.get("/charges")
    def list_charges(order_id: OrderId | None = None) -> list[Charge]:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM charges WHERE ? IS NULL OR order_id = ? ORDER BY rowid",
                (order_id, order_id),
            ).fetchall()
        return [_charge(row) for row in rows]

    return app

"""Payments service: cards turned into tokens, charges against a token, and their refunds.

A shop's front end sends the card number once, to POST /payment-methods (with the publishable
key, not the service token), and gets an opaque token back; everything after (the checkout,
its workflow history, the charges) carries the token. The number itself is never stored,
logged or put in a span: a payment method keeps its token, the card's brand and last four
digits, and, for the test cards, how a charge against it behaves.
"""

import re
import secrets
import sqlite3
from typing import Annotated

from fastapi import Depends, FastAPI, Path

from models.common import DEFAULT_LIST_LIMIT, IdempotencyKey, PaymentToken
from models.payments import (
    CARD_DECLINED,
    CARD_FLAKY,
    PAYMENT_METHODS_PATH,
    CardBehaviour,
    Charge,
    ChargeRequest,
    ChargeStatus,
    NewPaymentMethod,
    PaymentMethod,
    RefundRequest,
)
from services.auth import publishable_key_from_env, require_publishable_key
from services.database import Database, now_iso, row_by_key
from services.errors import ServiceFailure
from services.idempotency import fingerprint, idempotency_key_reused
from services.listing import CreatedBefore, Limit, OrderIds, list_rows
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
    refund_reason TEXT,
    created_at    TEXT NOT NULL  -- when the row was written (services.database.now_iso)
);
-- What the reconciler asks: the charges of a status made before a time, and of orders.
CREATE INDEX IF NOT EXISTS charges_by_status ON charges (status, created_at);
CREATE INDEX IF NOT EXISTS charges_by_order ON charges (order_id);
-- Attempts per charge_id of the flaky test card, so its failures survive a restart.
CREATE TABLE IF NOT EXISTS flaky_attempts (
    charge_id TEXT PRIMARY KEY,
    attempts  INTEGER NOT NULL
);
-- A tokenized card: never its number, nor a hash of it (a hash of a 16-digit number whose
-- first six and last four digits are known is brute-forced in seconds).
CREATE TABLE IF NOT EXISTS payment_methods (
    token      TEXT PRIMARY KEY,
    brand      TEXT NOT NULL,
    last4      TEXT NOT NULL,
    behaviour  TEXT NOT NULL CHECK (behaviour IN ('ok', 'declined', 'flaky')),
    created_at TEXT NOT NULL
);
"""

PathChargeId = Annotated[IdempotencyKey, Path()]
PathPaymentToken = Annotated[PaymentToken, Path()]

# Leading digits of the card networks (the issuer identification number), most specific
# first; enough to show "visa ending in 4242", not a full BIN table.
BRANDS = (
    ("amex", r"3[47]"),
    ("mastercard", r"5[1-5]|2(22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"),
    ("discover", r"6011|65"),
    ("visa", r"4"),
)


def card_brand(digits: str) -> str:
    for brand, prefix in BRANDS:
        if re.match(prefix, digits):
            return brand
    return "unknown"


def card_behaviour(digits: str) -> CardBehaviour:
    """How charges against this card behave: the test cards' own, any other card is ok."""
    if digits == CARD_DECLINED:
        return CardBehaviour.DECLINED
    if digits == CARD_FLAKY:
        return CardBehaviour.FLAKY
    return CardBehaviour.OK


def new_payment_token() -> str:
    # Random, not derived from the card: tokenizing a card twice gives two tokens.
    return f"pm_{secrets.token_urlsafe(18)}"


def _payment_method(row: sqlite3.Row) -> PaymentMethod:
    return PaymentMethod(token=row["token"], brand=row["brand"], last4=row["last4"])


def _charge(row: sqlite3.Row) -> Charge:
    return Charge(
        charge_id=row["charge_id"],
        order_id=row["order_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        card_last4=row["card_last4"],
        status=ChargeStatus(row["status"]),
        refund_reason=row["refund_reason"],
        created_at=row["created_at"],
    )


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
    return ServiceFailure(402, "card_declined", "the card was declined", "payment_token")


def _unknown_token() -> ServiceFailure:
    return ServiceFailure(
        422,
        "unknown_payment_token",
        "no payment method has this token: tokenize the card first (POST /payment-methods)",
        "payment_token",
    )


def _voided(charge_id: str) -> ServiceFailure:
    return ServiceFailure(
        409, "charge_voided", f"charge {charge_id!r} was refunded before it arrived; not charged"
    )


def create_app(db_path: str, flaky_failures: int = 2) -> FastAPI:
    # Before anything is created: no publishable key, no service (services.auth).
    publishable_key = publishable_key_from_env()
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("payments", public_paths=frozenset({PAYMENT_METHODS_PATH}))

    @app.post(
        PAYMENT_METHODS_PATH,
        status_code=201,
        dependencies=[Depends(require_publishable_key(publishable_key))],
    )
    def tokenize(body: NewPaymentMethod) -> PaymentMethod:
        """A shop's front end: the card number in the body (never in the URL), the
        publishable key in X-Publishable-Key; answers the token to check out with. The same
        card tokenized twice gets two tokens, as with real payment providers: one token per
        card would need a way to recognise the card, that is, something derived from its
        number kept here."""
        with db.write() as conn:
            token = new_payment_token()
            conn.execute(
                "INSERT INTO payment_methods (token, brand, last4, behaviour, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    token,
                    card_brand(body.card_number),
                    body.card_number[-4:],
                    card_behaviour(body.card_number),
                    now_iso(),
                ),
            )
            row = row_by_key(conn, "payment_methods", "token", token)
        assert row is not None
        return _payment_method(row)

    @app.get(f"{PAYMENT_METHODS_PATH}/{{token}}")
    def get_payment_method(token: PathPaymentToken) -> PaymentMethod:
        with db.read() as conn:
            row = row_by_key(conn, "payment_methods", "token", token)
        if row is None:
            raise ServiceFailure(
                404, "payment_method_not_found", "no payment method has this token", "token"
            )
        return _payment_method(row)

    @app.post("/charges", status_code=201)
    def charge(body: ChargeRequest) -> Charge:
        # The token is random and stands for nothing outside this service: hashed as is.
        digest = fingerprint(body)
        unavailable = False
        with db.write() as conn:
            row = row_by_key(conn, "charges", "charge_id", body.charge_id)
            if row is not None:
                if row["request_hash"] is None:
                    raise _voided(body.charge_id)
                if row["request_hash"] != digest:
                    raise idempotency_key_reused(body.charge_id)
            else:
                method = row_by_key(conn, "payment_methods", "token", body.payment_token)
                if method is None:
                    raise _unknown_token()  # nothing written: the transaction rolls back
                behaviour = CardBehaviour(method["behaviour"])
                if behaviour is CardBehaviour.FLAKY:
                    unavailable = _flaky_attempt(conn, body.charge_id) <= flaky_failures
                if not unavailable:
                    declined = behaviour is CardBehaviour.DECLINED
                    conn.execute(
                        "INSERT INTO charges (charge_id, request_hash, order_id, amount_cents,"
                        " currency, card_last4, status, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            body.charge_id,
                            digest,
                            body.order_id,
                            body.amount_cents,
                            body.currency,
                            method["last4"],
                            ChargeStatus.DECLINED if declined else ChargeStatus.SUCCEEDED,
                            now_iso(),
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
                    " currency, card_last4, status, refund_reason, created_at)"
                    " VALUES (?, NULL, NULL, 0, 'XXX', '', ?, ?, ?)",
                    (charge_id, ChargeStatus.VOIDED, body.reason, now_iso()),
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
    def list_charges(
        order_id: OrderIds = None,
        status: ChargeStatus | None = None,
        created_before: CreatedBefore = None,
        limit: Limit = DEFAULT_LIST_LIMIT,
    ) -> list[Charge]:
        """The charges (of any of the orders `order_id` names, of `status`, made before
        `created_before`, if given), oldest first."""
        with db.read() as conn:
            matches = {"order_id": order_id, "status": status}
            rows = list_rows(conn, "charges", matches, created_before, limit)
        return [_charge(row) for row in rows]

    return app

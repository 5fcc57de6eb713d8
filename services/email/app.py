"""Email service: sends (here: stores) customer mail, one message per idempotency key.

The key is the event's id, so a receipt announced twice is sent once.
"""

import sqlite3
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import IdempotencyKey
from models.email import SendEmail, SentEmail
from services.common import (
    Database,
    ServiceFailure,
    create_service_app,
    fingerprint,
    idempotency_key_reused,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS emails (
    email_id     TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    order_id     TEXT NOT NULL,
    to_addr      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    sent_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS emails_order ON emails (order_id);
"""

PathEmailId = Annotated[IdempotencyKey, Path()]


def _email(row: sqlite3.Row) -> SentEmail:
    return SentEmail(
        email_id=row["email_id"],
        order_id=row["order_id"],
        to=row["to_addr"],
        subject=row["subject"],
        body=row["body"],
        sent_at=row["sent_at"],
    )


def _get(conn: sqlite3.Connection, email_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM emails WHERE email_id = ?", (email_id,)
    ).fetchone()
    return row


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("email")

    @app.post("/emails", status_code=201)
    def send_email(body: SendEmail, response: Response) -> SentEmail:
        digest = fingerprint(body)
        with db.write() as conn:
            row = _get(conn, body.email_id)
            if row is None:
                conn.execute(
                    "INSERT INTO emails (email_id, request_hash, order_id, to_addr, subject,"
                    " body, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.email_id,
                        digest,
                        body.order_id,
                        body.to,
                        body.subject,
                        body.body,
                        datetime.now(UTC).isoformat(timespec="milliseconds"),
                    ),
                )
                row = _get(conn, body.email_id)
                assert row is not None
            elif row["request_hash"] != digest:
                raise idempotency_key_reused(body.email_id)
            else:
                response.status_code = 200  # a repeat: already sent, nothing sent again
            return _email(row)

    @app.get("/emails/{email_id}")
    def get_email(email_id: PathEmailId) -> SentEmail:
        with db.read() as conn:
            row = _get(conn, email_id)
        if row is None:
            raise ServiceFailure(404, "email_not_found", f"no email {email_id!r}", "email_id")
        return _email(row)

    @app.get("/emails")
    def list_emails(order_id: str | None = None, to: str | None = None) -> list[SentEmail]:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM emails WHERE (? IS NULL OR order_id = ?)"
                " AND (? IS NULL OR to_addr = ?) ORDER BY rowid",
                (order_id, order_id, to, to),
            ).fetchall()
        return [_email(row) for row in rows]

    return app

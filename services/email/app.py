"""Email service: sends (here: stores) customer mail, one message per idempotency key.

The key is the event's id, so a receipt announced twice is sent once.
"""

import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import IdempotencyKey
from models.email import SendEmail, SentEmail
from services.database import Database, now_iso, row_by_key
from services.errors import ServiceFailure
from services.idempotency import fingerprint, record_once
from services.service_app import create_service_app

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


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("email")

    @app.post("/emails", status_code=201)
    def send_email(body: SendEmail, response: Response) -> SentEmail:
        values = {
            "email_id": body.email_id,
            "order_id": body.order_id,
            "to_addr": body.to,
            "subject": body.subject,
            "body": body.body,
            "sent_at": now_iso(),
        }
        with db.write() as conn:  # a repeat answers the mail already sent
            row = record_once(conn, "emails", "email_id", values, fingerprint(body), response)
            return _email(row)

    @app.get("/emails/{email_id}")
    def get_email(email_id: PathEmailId) -> SentEmail:
        with db.read() as conn:
            row = row_by_key(conn, "emails", "email_id", email_id)
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

"""Dead-letters service: durable records of events a consumer gave up on, and their redrives.

- `POST /deadletters` upserts by letter id (`{event_id}:{consumer}`): new records are OPEN;
  a consumer failing again (after a redrive) reopens the record, failures + 1. The same
  failure written twice (`failure_id`) counts once.
- `POST /deadletters/{id}/redriven {"redrive": n}` records that redrive n was delivered:
  REDRIVEN, redrives = n, when n is newer than the record's redrives. Otherwise a REDRIVEN
  record is left as it is (a repeat), and an OPEN one, which failed again since, refuses it
  (409 `stale_redrive`): only a newer redrive closes it.
"""

import json
import sqlite3
from typing import Annotated

from fastapi import FastAPI, Path, Response

from models.common import IdempotencyKey
from models.deadletters import (
    DeadLetter,
    DeadLetterStatus,
    DeliveryTarget,
    MarkRedriven,
    NewDeadLetter,
)
from services.database import Database, now_iso, row_by_key
from services.errors import ServiceFailure
from services.service_app import create_service_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletters (
    letter_id       TEXT PRIMARY KEY,
    consumer        TEXT NOT NULL,
    event           TEXT NOT NULL,  -- JSON of the event
    target          TEXT NOT NULL,  -- JSON of the DeliveryTarget
    error           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_failure_id TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('OPEN', 'REDRIVEN')),
    failures        INTEGER NOT NULL,
    redrives        INTEGER NOT NULL,
    first_failed_at TEXT NOT NULL,
    last_failed_at  TEXT NOT NULL,
    redriven_at     TEXT
);
CREATE INDEX IF NOT EXISTS deadletters_status ON deadletters (status);
"""

PathLetterId = Annotated[IdempotencyKey, Path()]


def _letter(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter.model_validate(
        {
            "letter_id": row["letter_id"],
            "failure_id": row["last_failure_id"],
            "consumer": row["consumer"],
            "event": json.loads(row["event"]),
            "target": DeliveryTarget.model_validate_json(row["target"]),
            "error": row["error"],
            "attempts": row["attempts"],
            "redrive": row["redrives"],
            "status": row["status"],
            "failures": row["failures"],
            "redrives": row["redrives"],
            "first_failed_at": row["first_failed_at"],
            "last_failed_at": row["last_failed_at"],
            "redriven_at": row["redriven_at"],
        }
    )


def _not_found(letter_id: str) -> ServiceFailure:
    return ServiceFailure(404, "letter_not_found", f"no dead letter {letter_id!r}", "letter_id")


def create_app(db_path: str) -> FastAPI:
    db = Database(db_path)
    db.init(SCHEMA)
    app = create_service_app("deadletters")

    @app.post("/deadletters", status_code=201)
    def record(body: NewDeadLetter, response: Response) -> DeadLetter:
        now = now_iso()
        with db.write() as conn:
            row = row_by_key(conn, "deadletters", "letter_id", body.letter_id)
            if row is None:
                conn.execute(
                    "INSERT INTO deadletters (letter_id, consumer, event, target, error, attempts,"
                    " last_failure_id, status, failures, redrives, first_failed_at,"
                    " last_failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                    (
                        body.letter_id,
                        body.consumer,
                        body.event.model_dump_json(),
                        body.target.model_dump_json(),
                        body.error,
                        body.attempts,
                        body.failure_id,
                        DeadLetterStatus.OPEN,
                        body.redrive,
                        now,
                        now,
                    ),
                )
            elif row["last_failure_id"] == body.failure_id:
                response.status_code = 200  # the same failure written again
            else:
                # Failed again (after a redrive, or another delivery): reopen the record.
                response.status_code = 200
                conn.execute(
                    "UPDATE deadletters SET status = ?, error = ?, attempts = ?,"
                    " last_failure_id = ?, failures = failures + 1,"
                    " redrives = MAX(redrives, ?), last_failed_at = ? WHERE letter_id = ?",
                    (
                        DeadLetterStatus.OPEN,
                        body.error,
                        body.attempts,
                        body.failure_id,
                        body.redrive,
                        now,
                        body.letter_id,
                    ),
                )
            row = row_by_key(conn, "deadletters", "letter_id", body.letter_id)
            assert row is not None
            return _letter(row)

    @app.post("/deadletters/{letter_id}/redriven")
    def mark_redriven(letter_id: PathLetterId, body: MarkRedriven) -> DeadLetter:
        with db.write() as conn:
            row = row_by_key(conn, "deadletters", "letter_id", letter_id)
            if row is None:
                raise _not_found(letter_id)
            if row["redrives"] < body.redrive:
                conn.execute(
                    "UPDATE deadletters SET status = ?, redrives = ?, redriven_at = ?"
                    " WHERE letter_id = ?",
                    (DeadLetterStatus.REDRIVEN, body.redrive, now_iso(), letter_id),
                )
            elif row["status"] == DeadLetterStatus.OPEN:
                # Redrive n already ran and failed again: only a newer redrive may close it.
                raise ServiceFailure(
                    409,
                    "stale_redrive",
                    f"redrive {body.redrive} of {letter_id!r} failed again; redrive it anew",
                    "redrive",
                )
            # REDRIVEN with redrives >= n: a repeat, nothing changes.
            row = row_by_key(conn, "deadletters", "letter_id", letter_id)
            assert row is not None
            return _letter(row)

    @app.get("/deadletters/{letter_id}")
    def get_letter(letter_id: PathLetterId) -> DeadLetter:
        with db.read() as conn:
            row = row_by_key(conn, "deadletters", "letter_id", letter_id)
        if row is None:
            raise _not_found(letter_id)
        return _letter(row)

    @app.get("/deadletters")
    def list_letters(
        status: DeadLetterStatus | None = None, consumer: str | None = None
    ) -> list[DeadLetter]:
        with db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM deadletters WHERE (? IS NULL OR status = ?)"
                " AND (? IS NULL OR consumer = ?) ORDER BY rowid",
                (status, status, consumer, consumer),
            ).fetchall()
        return [_letter(row) for row in rows]

    return app

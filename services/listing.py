"""What the list endpoints share: filters on columns, a bound on when a record was opened
(`created_before`), and a bounded answer, oldest first.

The reconciler's finders (activities/reconcile.py) ask for the records still open since
before some time. Each listed table has an index on (status, created_at), so that asking for
one status before a time reads only those rows, however many settled records the table holds.
"""

import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from models.common import MAX_LIST_LIMIT, MAX_ORDER_IDS, OrderId
from services.database import iso_utc

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_8601(value: object) -> object:
    """A time as its ISO 8601 text, not a number (which pydantic would read as seconds since
    1970, so that `?created_before=5` would mean a moment nobody wrote)."""
    if isinstance(value, str | bytes) and _NUMBER.fullmatch(str(value).strip()):
        raise ValueError("must be an ISO 8601 time with its offset, e.g. 2026-01-31T09:00:00Z")
    return value


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before the first UTC year
        raise ValueError("must be a time between the years 1 and 9999 in UTC") from None


# With its offset (Z, or +HH:MM): a time without one would mean a different moment on each
# machine. Records store their times in UTC to the millisecond, and compare so.
UtcMoment = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]
CreatedBefore = Annotated[
    UtcMoment | None,
    Query(description="only records opened strictly before this time (ISO 8601, with offset)"),
]
# Repeated (`?order_id=a&order_id=b`): the records of any of these orders.
OrderIds = Annotated[
    list[OrderId] | None,
    Query(max_length=MAX_ORDER_IDS, description="only the records of these orders (repeated)"),
]
Limit = Annotated[
    int, Query(ge=1, le=MAX_LIST_LIMIT, description="at most this many records, the oldest first")
]


# A column's filter: its value; one of its values (the records these name); None, any.
Match = str | Sequence[str] | None


def list_rows(
    conn: sqlite3.Connection,
    table: str,
    matches: Mapping[str, Match],
    created_before: datetime | None,
    limit: int,
) -> list[sqlite3.Row]:
    """The rows of `table` that every filter of `matches` (column -> Match) lets through,
    opened before `created_before` if given: the `limit` oldest, ties in the order they were
    written. `table` and the columns are the service's constants, never the client's."""
    named = {
        column: match
        for column, match in matches.items()
        if match is not None and not isinstance(match, str)
    }
    # Rows named by their values are few: the other filters are then written `+column`, which
    # no index serves, so that SQLite looks those values up. Keeping no statistics, it would
    # rather walk the (status, created_at) index, which gives the order without a sort.
    unindexed = "+" if named else ""
    clauses: list[str] = []
    params: list[str | int] = []
    for column, values in named.items():
        clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    for column, match in matches.items():
        if isinstance(match, str):
            clauses.append(f"{unindexed}{column} = ?")
            params.append(match)
    if created_before is not None:
        clauses.append(f"{unindexed}created_at < ?")
        params.append(iso_utc(created_before))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows: list[sqlite3.Row] = conn.execute(
        f"SELECT * FROM {table}{where} ORDER BY created_at, rowid LIMIT ?", (*params, limit)
    ).fetchall()
    return rows

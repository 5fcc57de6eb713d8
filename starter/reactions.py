"""What the fan-out did for each order, read from the consumers' own services.

The demo prints it after the checkouts: receipt emails, shipments, loyalty points and
analytics records per order. The consumers run after the answer, so it waits (bounded) until
every confirmed order has its receipt and shipment, and every order its analytics record.
"""

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from pydantic import TypeAdapter
from rich.table import Table

from models.analytics import RecordedEvent
from models.checkout import CheckoutResult
from models.email import SentEmail
from models.loyalty import LedgerEntry
from models.warehouse import Shipment
from temporal_saga.models import Outcome

WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Reactions:
    order_id: str
    status: Outcome
    emails: int
    shipments: int
    points: int
    analytics: list[str]

    def settled(self) -> bool:
        if not self.analytics:
            return False
        if self.status is Outcome.CONFIRMED:
            return self.emails >= 1 and self.shipments >= 1 and self.points > 0
        return True


async def _reactions(
    http: httpx.AsyncClient, urls: Mapping[str, str], result: CheckoutResult, customer_id: str
) -> Reactions:
    order = {"order_id": result.order_id}
    emails, shipments, ledger, events = await asyncio.gather(
        http.get(f"{urls['email']}/emails", params=order),
        http.get(f"{urls['warehouse']}/shipments", params=order),
        http.get(f"{urls['loyalty']}/ledger", params={"customer_id": customer_id}),
        http.get(f"{urls['analytics']}/events", params=order),
    )
    for response in (emails, shipments, ledger, events):
        response.raise_for_status()
    entries = TypeAdapter(list[LedgerEntry]).validate_json(ledger.content)
    return Reactions(
        order_id=result.order_id,
        status=result.status,
        emails=len(TypeAdapter(list[SentEmail]).validate_json(emails.content)),
        shipments=len(TypeAdapter(list[Shipment]).validate_json(shipments.content)),
        points=sum(e.points for e in entries if e.order_id == result.order_id),
        analytics=[
            e.event_type for e in TypeAdapter(list[RecordedEvent]).validate_json(events.content)
        ],
    )


async def wait_for_reactions(
    urls: Mapping[str, str],
    orders: Sequence[tuple[CheckoutResult, str]],
    wait_seconds: float = WAIT_SECONDS,
    headers: Mapping[str, str] | None = None,
) -> list[Reactions]:
    """Each (result, customer id)'s reactions, once all have settled or `wait_seconds` passed.

    `headers`: the services' bearer token (services.auth)."""
    deadline = time.monotonic() + wait_seconds
    async with httpx.AsyncClient(timeout=5.0, headers=headers) as http:
        while True:
            seen = await asyncio.gather(
                *(_reactions(http, urls, result, customer) for result, customer in orders)
            )
            if all(r.settled() for r in seen) or time.monotonic() >= deadline:
                return list(seen)
            await asyncio.sleep(0.25)


def reactions_table(reactions: Sequence[Reactions]) -> Table:
    table = Table(title="Fan-out (after the answer)", show_lines=False)
    for column in ("order", "outcome", "receipt emails", "shipments", "points", "analytics"):
        table.add_column(column)
    for r in reactions:
        table.add_row(
            r.order_id,
            r.status.value,
            str(r.emails),
            str(r.shipments),
            str(r.points),
            ", ".join(r.analytics) or "-",
        )
    return table

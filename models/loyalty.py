"""Loyalty: a points ledger per customer; each event earns points at most once."""

from pydantic import BaseModel, Field

from models.common import CustomerId, IdempotencyKey, OrderId
from models.events import OrderConfirmed

# One point per whole unit of the order's currency.
CENTS_PER_POINT = 100


def points_for(total_cents: int) -> int:
    return total_cents // CENTS_PER_POINT


class AddPoints(BaseModel):
    # The idempotency key: the event's id.
    entry_id: IdempotencyKey
    customer_id: CustomerId
    order_id: OrderId
    points: int = Field(ge=0, le=1_000_000_000)


class LedgerEntry(AddPoints):
    created_at: str


class LoyaltyBalance(BaseModel):
    customer_id: str
    points: int
    entries: int


def points_entry_for(event: OrderConfirmed) -> AddPoints:
    return AddPoints(
        entry_id=event.event_id,
        customer_id=event.customer_id,
        order_id=event.order_id,
        points=points_for(event.total_cents),
    )
